"""Where a model goes wrong, after every test: fastai's top losses and most-confused classes, worst faces.

    trainer:
      callbacks:
        - class_path: lightning_hw.callbacks.interpretation.ClassificationInterpretation
          init_args: {num_samples: 9, top_confused: 5}
        - class_path: lightning_hw.callbacks.interpretation.WorstFaces   # landmark tasks

A test of a classifier (``test``, and the test of the best checkpoint that ends ``fit``)
then leaves in the run's directory (``<run>/`` after fit, ``<run>/eval/test-<time>/`` after
``test``), each also logged to W&B:

* ``top_losses.png`` (W&B ``plots/top_losses``): the test samples with the highest loss
  (the head's own per-sample loss, whose mean is ``test/loss``), each titled
  ``predicted / actual / probability of the prediction / loss`` (``raw output`` instead of
  ``probability`` for ``linear_mse``, whose outputs are none); images are drawn as stored
  (raw pixels, not the normalised model input), table rows as bars of the inputs that
  moved their loss most (input x gradient of the sample's loss, see
  :meth:`ClassificationInterpretation.contributions`).
* ``most_confused.csv``: every (actual, predicted) pair of
  different classes with its count, most frequent first, from the task's test confusion
  matrix; the first ``top_confused`` are printed.

A landmark test leaves ``worst_faces.png`` (``plots/worst_faces``): the faces with the highest
NME, true points as green circles and predictions as red crosses, titled with their NME.

The samples are chosen during the test loop from what the task's ``test_step`` returns (its
raw outputs), a batch at a time with tensor operations; only the running top ``N`` is kept,
so a large test set costs no memory and no second pass. Their stored images are then read
back from the datamodule by position (``raw_dataloader("test")``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure

from lightning_hw.atomic import atomic_open
from lightning_hw.callbacks.progress import say_beside_progress_bar
from lightning_hw.callbacks.plots import _displayable, _is_grey, class_namer, figure_grid, log_figure, run_directory
from lightning_hw.errors import ConfigError


class RunningTop:
    """The ``k`` samples with the largest score seen so far, with fields of each kept alongside.

    Each :meth:`update` takes a whole batch: the batch's own top ``k`` are picked first (so
    only ``k`` rows of its fields are copied), then merged with the kept ones. Everything
    stays on the batch's device; there is no per-sample Python and no host synchronisation.

    Args:
        k: how many samples to keep.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.scores: torch.Tensor | None = None
        self.fields: dict[str, torch.Tensor] = {}

    def update(self, scores: torch.Tensor, **fields: torch.Tensor) -> None:
        """Offer a batch: ``scores`` ``(n,)`` and per-sample ``fields`` (first dimension ``n``)."""
        if self.k <= 0 or scores.numel() == 0:
            return
        best = scores.topk(min(self.k, scores.shape[0])).indices
        scores, fields = scores[best], {name: value.detach()[best] for name, value in fields.items()}
        if self.scores is not None:
            scores = torch.cat([self.scores, scores])
            fields = {name: torch.cat([self.fields[name], value]) for name, value in fields.items()}
            best = scores.topk(min(self.k, scores.shape[0])).indices
            scores, fields = scores[best], {name: value[best] for name, value in fields.items()}
        self.scores, self.fields = scores, fields

    def gathered(self, trainer: Trainer) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """The kept samples, merged over all processes, highest score first; ``None`` if there are none.

        Samples whose score is ``-inf`` (nothing to rank, e.g. a face without annotated points) are dropped.
        """
        scores, fields = self.scores, self.fields
        if trainer.world_size > 1 and scores is not None:
            # Every process pads to k rows (score -inf) so that all_gather sees equal shapes.
            pad = self.k - scores.shape[0]
            scores = torch.cat([scores, scores.new_full((pad,), -math.inf)])
            fields = {n: torch.cat([v, v.new_zeros((pad, *v.shape[1:]))]) for n, v in fields.items()}
            scores = trainer.strategy.all_gather(scores).reshape(-1)
            fields = {n: trainer.strategy.all_gather(v).reshape(-1, *v.shape[1:]) for n, v in fields.items()}
            best = scores.topk(min(self.k, scores.shape[0])).indices
            scores, fields = scores[best], {n: v[best] for n, v in fields.items()}
        if scores is None:
            return None
        keep = scores > -math.inf
        if not keep.any():
            return None
        return scores[keep].cpu(), {n: v[keep].cpu() for n, v in fields.items()}

    def reset(self) -> None:
        self.scores, self.fields = None, {}


class KeptTestSamples(Callback):
    """Shared by the interpretation callbacks: the running top ``N`` and the test sample positions.

    A subclass names what it needs from the task (``output_key`` in ``test_step``'s returned dict,
    ``task_method`` on the task, ``missing``: the message when either is absent) and ranks one test
    batch in :meth:`collect`.
    """

    output_key: str
    task_method: str
    missing: str

    def __init__(self, num_samples: int) -> None:
        self.check_at_least("num_samples", num_samples, 0)
        self.num_samples = num_samples
        self.top = RunningTop(num_samples)
        self._seen = 0
        self._unsupported: str | None = None

    def check_at_least(self, name: str, value: int | None, least: int, none_ok: bool = False) -> None:
        """Refuse a setting below ``least`` when the callback is built, before anything trains.

        Checked here because the figure is drawn only after the test: a negative ``columns``
        failed there, with matplotlib's traceback, once the whole run had trained, and a
        negative count silently drew or printed nothing.

        Raises:
            ConfigError: ``value`` is below ``least`` (or ``None`` where that is not allowed).
        """
        if (value is None and none_ok) or (value is not None and value >= least):
            return
        what = f"{least} or more" + (" (or null)" if none_ok else "")
        raise ConfigError(f"{type(self).__name__}: {name} must be {what}, got {value}")

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.top.reset()
        self._seen = 0
        self._unsupported = None

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if dataloader_idx != 0 or self._unsupported is not None:
            return
        if not (isinstance(outputs, dict) and self.output_key in outputs and hasattr(pl_module, self.task_method)):
            self._unsupported = self.missing
            return
        self.collect(trainer, pl_module, outputs[self.output_key], batch)

    def collect(self, trainer: Trainer, pl_module: LightningModule, output: torch.Tensor, batch: Any) -> None:
        """Rank one test batch: ``output`` is ``test_step``'s ``output_key`` entry."""
        raise NotImplementedError

    def positions(self, trainer: Trainer, n: int, device: torch.device) -> torch.Tensor:
        """Positions in the datamodule's test split of the next ``n`` samples of this process.

        Test loaders are not shuffled; across processes sample ``i`` of process ``r`` is
        sample ``i * world_size + r`` (Lightning's ``DistributedSampler`` and
        :class:`~lightning_hw.data.base.TensorBatchLoader` both deal them out so), and a
        :class:`~lightning_hw.callbacks.feature_cache.FeatureCache` serves its rows in that order.
        """
        local = torch.arange(self._seen, self._seen + n, device=device)
        self._seen += n
        positions = local * trainer.world_size + trainer.global_rank
        return positions

    def raw_inputs(self, trainer: Trainer, positions: torch.Tensor) -> torch.Tensor | None:
        """The stored test samples at ``positions`` (images as decoded, table rows as read), or ``None``."""
        datamodule = trainer.datamodule
        raw_dataloader = getattr(datamodule, "raw_dataloader", None)
        if raw_dataloader is None:
            return None
        try:
            loader = raw_dataloader("test")
        except (KeyError, NotImplementedError):  # a datamodule without a stored test split
            return None
        tensors = getattr(loader, "tensors", None)  # TensorBatchLoader: the split in memory
        if tensors is not None:
            return tensors[0][positions] if int(positions.max()) < tensors[0].shape[0] else None
        dataset = getattr(loader, "dataset", None)  # a DataLoader decoding on access: read only these
        if dataset is not None and int(positions.max()) < len(dataset):
            return torch.stack([torch.as_tensor(dataset[i][0]) for i in positions.tolist()])
        return None

    def images_to_draw(self, trainer: Trainer, fields: dict[str, torch.Tensor], what: str) -> torch.Tensor | None:
        """The kept test samples' images as stored, else their model inputs stretched to the visible range.

        ``None`` (said once) when neither is an image, e.g. the backbone features a
        :class:`~lightning_hw.callbacks.feature_cache.FeatureCache` served to a test without stored images.

        Args:
            trainer: the trainer (its datamodule holds the stored samples).
            fields: the gathered fields, with ``position`` and ``inputs``.
            what: the figure, for the message (``worst_faces.png``).
        """
        images = self.raw_inputs(trainer, fields["position"])
        if images is not None:
            return images
        if not _is_image(fields["inputs"][0]):
            rank_zero_info(f"{type(self).__name__}: the test split has no stored images to draw; no {what}")
            return None
        images = torch.stack([torch.as_tensor(_displayable(x)) for x in fields["inputs"]])
        return images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)

    def say_unsupported(self, pl_module: LightningModule, what: str) -> bool:
        """Report once, after the test, that the task gave nothing to rank; whether it did."""
        if self._unsupported is None:
            return False
        rank_zero_info(f"{type(self).__name__}: {type(pl_module).__name__} {self._unsupported}; no {what} drawn")
        return True


class ClassificationInterpretation(KeptTestSamples):
    """After each test of a classifier: ``top_losses.png`` and ``most_confused.csv`` (see the module doc).

    Needs a task whose ``test_step`` returns its raw outputs (``{"loss", "outputs"}``) and
    that has ``sample_losses(outputs, target)`` and an output ``head``, as
    :class:`~lightning_hw.tasks.classification.Classifier`; the confusion counts come from
    its ``test_confusion`` metric.

    Args:
        num_samples: how many highest-loss test samples to draw (0: no figure).
        top_confused: how many (actual, predicted) pairs to print (all are in the CSV; 0: none printed).
        columns: samples per row of the figure, at least 1 (default: as square a grid as possible).
        features_shown: bars per table row (the inputs that moved its loss most), at least 1.

    Raises:
        ConfigError: a count below those bounds (refused before training, not after it).
    """

    def __init__(self, num_samples: int = 9, top_confused: int = 5, columns: int | None = None, features_shown: int = 8) -> None:
        super().__init__(num_samples)
        self.check_at_least("top_confused", top_confused, 0)
        self.check_at_least("columns", columns, 1, none_ok=True)
        self.check_at_least("features_shown", features_shown, 1)
        self.top_confused = top_confused
        self.columns = columns
        self.features_shown = features_shown
        #: the last test's (actual, predicted, count) pairs, most frequent first
        self.confused: list[tuple[str, str, int]] = []

    output_key = "outputs"
    task_method = "sample_losses"
    missing = "gives no per-sample outputs from test_step (see Classifier.test_step)"

    def collect(self, trainer: Trainer, pl_module: LightningModule, output: torch.Tensor, batch: Any) -> None:  # noqa: D102
        raw_out, x, y = output, batch[0], batch[1]
        head = pl_module.head
        with torch.no_grad():
            losses = pl_module.sample_losses(raw_out.float(), y)
            preds = head.predict(raw_out)
            score = head.scores(raw_out.float()).gather(1, preds.unsqueeze(1)).squeeze(1)
        self.top.update(
            losses, inputs=x, target=y, predicted=preds, score=score,
            position=self.positions(trainer, y.shape[0], y.device),
        )

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run or self.say_unsupported(pl_module, "top losses"):  # a fast_dev_run saves nothing
            return
        names = [str(n) for n in (getattr(pl_module, "class_names", None) or getattr(trainer.datamodule, "class_names", None) or [])]
        self.report_confused(trainer, pl_module, names)
        kept = self.top.gathered(trainer)
        if kept is None:
            return
        losses, fields = kept
        raw = self.raw_inputs(trainer, fields["position"])
        if not _is_image(raw[0] if raw is not None else fields["inputs"][0]):  # table rows: bars of what moved the loss
            fields["contribution"] = self.contributions(trainer, pl_module, fields["inputs"], fields["target"])
        # A head of a task of one's own may not say what its scores are: "score" claims nothing.
        score_name = getattr(pl_module.head, "score_name", "score")
        fig = self.figure(losses, fields, raw, names, bar_labels(trainer.datamodule), score_name)
        log_figure(trainer, "top_losses", fig, caption=f"highest test losses: {_title_parts(score_name)}")

    # -- most confused ---------------------------------------------------------------------------

    def report_confused(self, trainer: Trainer, pl_module: LightningModule, names: list[str]) -> None:
        """Write ``most_confused.csv``, log it to W&B and print the first :attr:`top_confused` pairs."""
        metric = getattr(pl_module, "test_confusion", None)
        if metric is None or not metric.update_called:
            return
        matrix = metric.compute().cpu()  # every process holds the counts of every process's samples
        names = names if len(names) == matrix.shape[0] else [str(i) for i in range(matrix.shape[0])]
        self.confused = most_confused(matrix, names)
        directory = run_directory(trainer)
        if not trainer.is_global_zero:
            return
        with atomic_open(directory / "most_confused.csv", newline="") as f:
            f.write(confused_csv(self.confused))
        # Not logged as a W&B table: a table is a W&B artifact, and offline runs upload none (the CSV is in the run).
        if self.top_confused > 0:
            say_beside_progress_bar(trainer, format_confused(self.confused, self.top_confused))

    # -- top losses ------------------------------------------------------------------------------

    @staticmethod
    def contributions(trainer: Trainer, pl_module: LightningModule, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each model input's share in its sample's loss: input x gradient of the loss (``(n, *input)``).

        The largest inputs say nothing of a multi-hot row (Reuters: every word present is 1,
        and the bars showed 8 of them at random) and little of a standardised one; the
        gradient says how much the loss moves with each input, and times the input (0 for a
        word that is absent, the distance from the training mean for standardised
        features) it is the first-order share of that input. Positive: it raised the loss,
        pushing away from the actual class. One forward and backward pass of the kept samples.

        Args:
            trainer: the trainer (its precision's forward context is the test's).
            pl_module: the task, with ``sample_losses``.
            inputs: the kept samples' model inputs.
            target: their classes.
        """
        # The test runs in inference mode, where nothing takes a gradient; its tensors need cloning out of it.
        with torch.inference_mode(False), torch.enable_grad(), trainer.precision_plugin.forward_context():
            x = inputs.to(pl_module.device).clone()  # the dtype test_step was given (bf16 under bf16-true)
            x = (x if x.is_floating_point() else x.float()).requires_grad_(True)
            losses = pl_module.sample_losses(pl_module(x).float(), target.to(pl_module.device).clone())
            (gradient,) = torch.autograd.grad(losses.sum(), x)
        return (x * gradient).detach().float().cpu()

    def figure(
        self,
        losses: torch.Tensor,
        fields: dict[str, torch.Tensor],
        raw: torch.Tensor | None,
        class_names: list[str],
        feature_names: list[str] | None = None,
        score_name: str = "probability",
    ) -> Figure:
        """The grid of top losses: images as stored, or bars of a table row's largest model inputs.

        Args:
            losses: ``(n,)`` losses, highest first.
            fields: ``inputs`` (model inputs), ``target``, ``predicted``, ``score`` (of the prediction) per sample,
                and for table rows ``contribution`` (:meth:`contributions`).
            raw: the stored samples, or ``None`` (images are then drawn from the model input, stretched).
            class_names: names by class index.
            feature_names: names of a table's columns, for the bars.
            score_name: what ``score`` is (the head's ``score_name``): ``probability``, ``raw output``...
        """
        n = losses.shape[0]
        fig, axes = figure_grid(n, self.columns, 3.2)
        name = class_namer(class_names)
        # MSE losses averaged over 46 classes all read 0.03 at two decimals: as many digits as tell them apart.
        loss_text = distinct_numbers(losses.tolist())
        score_format = ".2f" if score_name == "probability" else ".3g"  # a raw output may be -0.004 or 12.5

        for i, ax in enumerate(axes):
            if i >= n:
                ax.axis("off")
                continue
            shown = raw[i] if raw is not None else fields["inputs"][i]
            if _is_image(shown):
                ax.imshow(_displayable(shown), cmap="gray" if _is_grey(shown) else None, vmin=0, vmax=1)
                ax.axis("off")
            else:
                self._bars(ax, fields["contribution"][i], raw[i] if raw is not None else None, feature_names)
            predicted, actual = int(fields["predicted"][i]), int(fields["target"][i])
            ax.set_title(
                f"{name(predicted)} / {name(actual)} / {float(fields['score'][i]):{score_format}} / {loss_text[i]}",
                color="green" if predicted == actual else "red",
                fontsize=8,
            )
        fig.suptitle(f"top losses: {_title_parts(score_name)}", fontsize=10)
        return fig

    def _bars(self, ax: Any, contribution: torch.Tensor, raw: torch.Tensor | None, feature_names: list[str] | None) -> None:
        """A table row: the inputs with the largest share in its loss (:meth:`contributions`), raw values in the labels."""
        values = contribution.reshape(-1)
        raw_values = raw.reshape(-1) if raw is not None and raw.numel() == values.numel() else None
        moved = int((values != 0).sum())  # an input of 0 (a word absent) has no share: it is never a bar
        index = values.abs().topk(min(self.features_shown, moved)).indices.tolist()
        labels = []
        for j in index:
            label = feature_names[j] if feature_names and j < len(feature_names) else f"feature {j}"
            labels.append(f"{label} = {float(raw_values[j]):.4g}" if raw_values is not None else label)
        ax.barh(range(len(index)), values[index].numpy(), color=["tab:red" if values[j] > 0 else "tab:blue" for j in index])
        ax.set_yticks(range(len(index)), labels, fontsize=6)
        ax.invert_yaxis()
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.tick_params(axis="x", labelsize=6)
        ax.locator_params(axis="x", nbins=4)  # shares such as -0.0075 need the room
        ax.set_xlabel("input x gradient of the loss (> 0 raised it)", fontsize=7)


def bar_labels(datamodule: Any) -> list[str] | None:
    """Names of a table's columns for plots: the datamodule's ``plot_feature_names``, else its ``feature_names``.

    ``plot_feature_names`` names columns for people only (Reuters: ``<start>``, ``word rank 17``);
    ``feature_names`` are also the CSV header ``predict`` reads the columns by.
    """
    return getattr(datamodule, "plot_feature_names", None) or getattr(datamodule, "feature_names", None)


class WorstFaces(KeptTestSamples):
    """After each test of a landmark task: ``worst_faces.png``, the faces with the highest NME (see the module doc).

    Needs a task whose ``test_step`` returns its predicted points (``{"loss", "points"}``) and
    that has ``face_errors(points, target)`` and ``to_pixels``, as
    :class:`~lightning_hw.tasks.landmarks.LandmarkRegressor`.

    Args:
        num_samples: how many faces to draw (0: no figure).
        columns: faces per row, at least 1 (default: as square a grid as possible).
    """

    def __init__(self, num_samples: int = 9, columns: int | None = None) -> None:
        super().__init__(num_samples)
        self.check_at_least("columns", columns, 1, none_ok=True)
        self.columns = columns

    output_key = "points"
    task_method = "face_errors"
    missing = "gives no predicted points from test_step (see LandmarkRegressor.test_step)"

    def collect(self, trainer: Trainer, pl_module: LightningModule, output: torch.Tensor, batch: Any) -> None:  # noqa: D102
        points, x, target = output, batch[0], batch[1]
        with torch.no_grad():
            # A face the NME leaves out (NaN) is never among the worst.
            errors = pl_module.face_errors(points, target).nan_to_num(nan=-math.inf)
        self.top.update(
            errors, inputs=x, points=points, target=target, position=self.positions(trainer, target.shape[0], target.device)
        )

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run or self.say_unsupported(pl_module, "worst faces"):  # a fast_dev_run saves nothing
            return
        kept = self.top.gathered(trainer)
        if kept is None:
            return
        errors, fields = kept
        images = self.images_to_draw(trainer, fields, "worst_faces.png")
        if images is None:
            return
        scale = pl_module.pixel_scale.cpu()
        fig = self.figure(images, fields["target"].float() * scale, fields["points"].float() * scale, errors)
        log_figure(trainer, "worst_faces", fig, caption="highest-NME test faces: true green circles, predicted red crosses")

    def figure(self, images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, errors: torch.Tensor) -> Figure:
        """Faces with both point sets (:func:`~lightning_hw.callbacks.landmark_plots.draw_landmarks`), titled with their NME."""
        from lightning_hw.callbacks.landmark_plots import draw_landmarks

        n = images.shape[0]
        fig = draw_landmarks(images, true, pred, columns=self.columns or min(n, 3))
        for ax, error in zip(fig.axes, errors.tolist()):
            ax.set_title(f"NME {error:.3f}", fontsize=8)
        fig.suptitle("worst test faces: true (green circles), predicted (red crosses)")
        fig.tight_layout()  # again: the titles are new
        return fig


def _title_parts(score_name: str) -> str:
    """What a top-loss title says, in order."""
    return f"predicted / actual / {score_name} of the prediction / loss"


def distinct_numbers(values: list[float], least: int = 3, most: int = 6) -> list[str]:
    """``values`` with the fewest significant digits (``least`` to ``most``) at which different values print differently.

    Args:
        values: the numbers, e.g. the losses of one figure.
        least: digits at least.
        most: digits at most (values closer than that print alike).
    """
    distinct = len(set(values))
    for digits in range(least, most + 1):
        texts = [f"{v:.{digits}g}" for v in values]
        if len(set(texts)) == distinct:
            return texts
    return texts


def _is_image(sample: torch.Tensor) -> bool:
    """``(C, H, W)`` with 1 or 3 channels, or ``(H, W)``: something ``imshow`` can draw."""
    return (sample.ndim == 3 and sample.shape[0] in (1, 3)) or (sample.ndim == 2 and min(sample.shape) > 1)


def most_confused(matrix: torch.Tensor, class_names: list[str]) -> list[tuple[str, str, int]]:
    """Every off-diagonal ``(actual, predicted, count)`` with a count, most frequent first.

    Ties keep the matrix's order (by actual, then predicted class index), as fastai's
    ``most_confused`` does.

    Args:
        matrix: ``(C, C)`` counts, ``matrix[actual, predicted]``.
        class_names: the ``C`` names.
    """
    counts = matrix.clone().long()
    counts.fill_diagonal_(0)
    actual, predicted = counts.nonzero(as_tuple=True)
    values = counts[actual, predicted]
    order = torch.sort(values, descending=True, stable=True).indices
    return [(class_names[int(actual[i])], class_names[int(predicted[i])], int(values[i])) for i in order]


def confused_csv(pairs: list[tuple[str, str, int]]) -> str:
    """``most_confused.csv``: a header ``actual,predicted,count`` and one row per pair."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["actual", "predicted", "count"])
    writer.writerows(pairs)
    return text.getvalue()


def format_confused(pairs: list[tuple[str, str, int]], top: int) -> str:
    """The printed block: the first ``top`` pairs, one line each."""
    if not pairs:
        return "Most confused: none, every test sample was classified correctly"
    shown = pairs[:top]
    lines = [f"Most confused (actual -> predicted: test samples), top {len(shown)} of {len(pairs)} pairs:"]
    width = max(len(actual) for actual, _, _ in shown)
    lines += [f"  {actual:>{width}} -> {predicted}: {count}" for actual, predicted, count in shown]
    return "\n".join(lines)
