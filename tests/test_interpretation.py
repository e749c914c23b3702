"""Top losses, most-confused classes and worst faces after a test, against hand computations."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from lightning_hw.callbacks.epoch_metrics import LogEpochMetrics
from lightning_hw.callbacks.interpretation import (
    ClassificationInterpretation,
    RunningTop,
    WorstFaces,
    confused_csv,
    format_confused,
    most_confused,
)
from lightning_hw.cli import HWCLI
from lightning_hw.data.base import InMemoryDataModule
from lightning_hw.data.landmarks.synthetic_faces import SyntheticFaces
from lightning_hw.nets.small_cnn import SmallCNN
from lightning_hw.tasks.classification import Classifier
from lightning_hw.tasks.landmarks import LandmarkRegressor

from conftest import QUICKSTART, tiny_run_args

NAMES = ["ant", "bee", "cat", "dog"]


class Rows(InMemoryDataModule):
    """13 fixed table rows of 3 features; every split is the same rows (only the test split matters here)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names: list[str], **kwargs) -> None:
        super().__init__(standardize=True, eval_batch_size=6, **kwargs)  # 3 test batches: 6, 6, 1
        self.x, self.y, self.names = x, y, names

    @property
    def class_names(self) -> list[str]:
        return self.names

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3,)

    def load_splits(self):
        return {split: (self.x, self.y) for split in ("train", "val", "test")}


def rows(num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(13, 3, generator=g) * 10 + 50, torch.randint(0, num_classes, (13,), generator=g)


def fixed_linear(outputs: int) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, outputs)


def run_test(model, datamodule, callback, tmp_path) -> Trainer:
    trainer = Trainer(
        logger=False, default_root_dir=tmp_path, callbacks=[LogEpochMetrics(), callback], accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    trainer.test(model, datamodule=datamodule, verbose=False)
    return trainer


HAND_LOSSES = {
    # per-sample losses written out with torch.nn.functional, not through the heads
    "softmax_ce": lambda out, y: F.cross_entropy(out, y, reduction="none"),
    "binary_bce": lambda out, y: F.binary_cross_entropy_with_logits(out[:, 0], y.float(), reduction="none"),
    "sigmoid_mse": lambda out, y: ((out.sigmoid() - F.one_hot(y, out.shape[1]).float()) ** 2).mean(dim=1),
}
HAND_SCORE = {
    "softmax_ce": lambda out: out.softmax(1).amax(1),
    "binary_bce": lambda out: torch.maximum(out[:, 0].sigmoid(), 1 - out[:, 0].sigmoid()),
    "sigmoid_mse": lambda out: out.sigmoid().amax(1),
}


@pytest.mark.parametrize("head", list(HAND_LOSSES))
def test_top_losses_are_the_test_samples_with_the_highest_loss(head, tmp_path, capsys):
    names = NAMES[:2] if head == "binary_bce" else NAMES
    x, y = rows(len(names))
    dm = Rows(x, y, names)
    net = fixed_linear(1 if head == "binary_bce" else len(names))
    model = Classifier(net=net, num_classes=len(names), input_shape=(3,), head=head, class_names=names)
    callback = ClassificationInterpretation(num_samples=4)
    trainer = run_test(model, dm, callback, tmp_path)

    # By hand, on the whole test set at once: the standardised rows through the same linear layer.
    with torch.no_grad():
        out = net((x - x.mean(0)) / x.std(0))
    losses = HAND_LOSSES[head](out, y)
    expected = losses.argsort(descending=True)[:4]
    chosen, fields = callback.top.gathered(trainer)
    assert fields["position"].tolist() == expected.tolist()  # 3 batches: the top 4 crossed batch borders
    torch.testing.assert_close(chosen, losses[expected])
    torch.testing.assert_close(fields["score"], HAND_SCORE[head](out)[expected])
    assert fields["target"].tolist() == y[expected].tolist()
    # Their stored rows, for the bars' labels, are the raw rows, not the standardised model inputs.
    torch.testing.assert_close(callback.raw_inputs(trainer, fields["position"]), x[expected])
    # The bars: each input times the gradient of its sample's loss, here through the hand-written loss.
    inputs = ((x - x.mean(0)) / x.std(0))[expected].requires_grad_(True)
    (gradient,) = torch.autograd.grad(HAND_LOSSES[head](net(inputs), y[expected]).sum(), inputs)
    shares = callback.contributions(trainer, model, fields["inputs"], fields["target"])
    torch.testing.assert_close(shares, (inputs * gradient).detach())
    assert (tmp_path / "top_losses.png").stat().st_size > 10_000

    # most_confused.csv: every (actual, predicted) of different classes, counted by hand.
    predicted = (out[:, 0] > 0).long() if head == "binary_bce" else out.argmax(1)
    hand = Counter((names[a], names[p]) for a, p in zip(y.tolist(), predicted.tolist()) if a != p)
    with (tmp_path / "most_confused.csv").open() as f:
        written = list(csv.DictReader(f))
    assert {(r["actual"], r["predicted"]): int(r["count"]) for r in written} == hand
    assert [int(r["count"]) for r in written] == sorted(hand.values(), reverse=True)
    assert "Most confused (actual -> predicted: test samples)" in capsys.readouterr().out


def test_titles_say_predicted_actual_probability_and_loss():
    callback = ClassificationInterpretation(num_samples=2)
    fields = {
        "inputs": torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8),
        "target": torch.tensor([1, 2]), "predicted": torch.tensor([1, 0]), "score": torch.tensor([0.51, 0.875]),
    }
    fig = callback.figure(torch.tensor([0.693, 2.5]), fields, None, ["cat", "dog", "bird"])
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["dog / dog / 0.51 / 0.693", "cat / bird / 0.88 / 2.5"]
    assert fig._suptitle.get_text() == "top losses: predicted / actual / probability of the prediction / loss"
    assert [ax.title.get_color() for ax in titled] == ["green", "red"]
    assert all(ax.images for ax in titled)  # (3, 8, 8) uint8 samples are drawn as images


def test_most_confused_from_a_hand_made_confusion():
    #           predicted: a  b  c
    matrix = torch.tensor([[5, 2, 0],   # actual a
                           [4, 7, 2],   # actual b
                           [0, 1, 9]])  # actual c
    pairs = most_confused(matrix, ["a", "b", "c"])
    assert pairs == [("b", "a", 4), ("a", "b", 2), ("b", "c", 2), ("c", "b", 1)]  # ties in matrix order
    assert confused_csv(pairs).splitlines() == ["actual,predicted,count", "b,a,4", "a,b,2", "b,c,2", "c,b,1"]
    assert format_confused(pairs, 2).splitlines() == [
        "Most confused (actual -> predicted: test samples), top 2 of 4 pairs:", "  b -> a: 4", "  a -> b: 2"
    ]
    # The same counts come out of torchmetrics' matrix built from the samples.
    target = torch.tensor([0] * 7 + [1] * 13 + [2] * 10)
    preds = torch.tensor([0] * 5 + [1] * 2 + [0] * 4 + [1] * 7 + [2] * 2 + [1] + [2] * 9)
    metric = MulticlassConfusionMatrix(3)
    metric.update(preds, target)
    assert most_confused(metric.compute(), ["a", "b", "c"]) == pairs
    assert format_confused([], 5) == "Most confused: none, every test sample was classified correctly"


def test_running_top_keeps_the_largest_over_batches():
    top = RunningTop(3)
    scores = torch.tensor([0.5, 3.0, -math.inf, 2.0, 7.0, 1.0, 0.0, 1.5, 6.5])
    for batch in (slice(0, 5), slice(5, 9)):  # batches larger than k, their best not first
        top.update(scores[batch], index=torch.arange(9)[batch])
    assert top.fields["index"].tolist() == [4, 8, 1]
    assert top.scores.tolist() == [7.0, 6.5, 3.0]


def test_worst_faces_are_the_test_faces_with_the_highest_nme(tmp_path):
    dm = SyntheticFaces(num_samples=60, image_size=32, splits=(0.5, 0.2, 0.3), batch_size=8, missing_rate=0.2)
    torch.manual_seed(0)
    net = SmallCNN((3, 32, 32), 2 * dm.num_landmarks, channels=[8, 16])
    model = LandmarkRegressor(net=net, num_landmarks=dm.num_landmarks, input_shape=(3, 32, 32), eye_indices=dm.eye_indices)
    callback = WorstFaces(num_samples=3)
    dm.eval_batch_size = 6  # 18 test faces in 3 batches
    trainer = run_test(model, dm, callback, tmp_path)

    images, points = dm.raw_data["test"]
    model.eval()
    with torch.no_grad():
        x, _ = dm.transform_batch(images, points)
        pred = model(x) * 32  # pixels of the 32 x 32 image

    def nme(face: int) -> float:
        """One face by hand: mean over its annotated points of the error / inter-ocular distance."""
        true = points[face]
        present = [k for k in range(true.shape[0]) if not torch.isnan(true[k]).any()]
        if 0 not in present or 1 not in present:
            return -math.inf  # no eyes: the metric leaves the face out
        iod = math.dist(true[0].tolist(), true[1].tolist())
        return sum(math.dist(pred[face, k].tolist(), true[k].tolist()) for k in present) / len(present) / iod

    by_hand = sorted(range(len(points)), key=nme, reverse=True)[:3]
    errors, fields = callback.top.gathered(trainer)
    assert fields["position"].tolist() == by_hand
    assert errors.tolist() == pytest.approx([nme(i) for i in by_hand], rel=1e-4)
    assert torch.equal(callback.raw_inputs(trainer, fields["position"]), images[by_hand])
    assert (tmp_path / "worst_faces.png").stat().st_size > 10_000


def test_quickstart_fit_leaves_top_losses_and_most_confused_in_its_run(tiny_args, workdir, capsys):
    # With its progress bar: the list had been printed onto the end of the still-open test bar.
    HWCLI(args=tiny_args("fit", "--run.name", "r", "--run.wandb", "offline", "--trainer.enable_progress_bar", "true"))
    run_dir = workdir / "runs" / "quickstart" / "r"
    assert (run_dir / "top_losses.png").stat().st_size > 10_000
    with (run_dir / "most_confused.csv").open() as f:
        written = list(csv.reader(f))
    assert written[0] == ["actual", "predicted", "count"]
    counts = [int(count) for _, _, count in written[1:]]
    assert counts and counts == sorted(counts, reverse=True) and all(a != p for a, p, _ in written[1:])
    out = capsys.readouterr().out
    assert "Testing DataLoader 0: 100%" in out  # the bar was drawn
    assert all(line.startswith("Most confused") for line in re.split(r"[\r\n]", out) if "Most confused" in line)
    block = out[out.index("Most confused"):].splitlines()[: 1 + min(5, len(counts))]
    assert block[1:] == [f"  {a:>{max(len(r[0]) for r in written[1:6])}} -> {p}: {c}" for a, p, c in written[1:6]]
    # Logged to the offline W&B run like the other plots (the pairs stay in the CSV: a W&B table is an artifact).
    media = run_dir.glob("wandb/offline-run-*/files/media")
    files = {p.name.split("_")[0] for m in media for p in m.rglob("*") if p.is_file()}
    assert "top" in files and "most" not in files, files


def test_top_losses_through_the_feature_cache_find_their_own_images(tmp_path):
    """The cache stores test features in its own order; the drawn images must still be the samples ranked."""
    from transfer_utils import RandomImages, make_task, make_trainer

    from lightning_hw.callbacks.feature_cache import FeatureCache
    from lightning_hw.callbacks.finetuning import FreezeBackbone

    torch.manual_seed(0)
    task = make_task()
    dm = RandomImages(splits=(0.5, 0.25, 0.25), eval_batch_size=4)  # 6 test images
    cache, callback = FeatureCache(cache_dir=str(tmp_path / "cache")), ClassificationInterpretation(num_samples=3)
    trainer = make_trainer([FreezeBackbone(), cache, LogEpochMetrics(), callback], default_root_dir=tmp_path)
    trainer.test(task, datamodule=dm, verbose=False)
    assert cache.events == {"test": "computed"}
    assert cache._features["test"][0].shape[0] == 6

    images, labels = dm.raw_data["test"]
    with torch.no_grad():
        out = task.eval()(dm.model_batch((images, labels))[0])
    losses = F.binary_cross_entropy_with_logits(out[:, 0], labels.float(), reduction="none")
    expected = losses.argsort(descending=True)[:3]
    chosen, fields = callback.top.gathered(trainer)
    torch.testing.assert_close(chosen, losses[expected], rtol=1e-4, atol=1e-5)
    assert torch.equal(callback.raw_inputs(trainer, fields["position"]), images[expected])


def test_a_subclass_with_its_own_shared_step_keeps_it_in_testing():
    calls = []

    class Counting(Classifier):
        def shared_step(self, batch, stage):
            calls.append(stage)
            return super().shared_step(batch, stage)

    x, y = rows(4)
    task = Counting(net=fixed_linear(4), num_classes=4, input_shape=(3,))
    plain = Classifier(net=fixed_linear(4), num_classes=4, input_shape=(3,))
    assert task.test_step((x, y), 0).item() == pytest.approx(plain.test_step((x, y), 0)["loss"].item())
    assert calls == ["test"]


@pytest.mark.parametrize(("head", "score_name"), [("linear_mse", "raw output"), ("softmax_mse", "probability")])
def test_top_loss_titles_of_an_mse_head_say_what_the_score_is_and_tell_the_losses_apart(
    tiny_args, workdir, monkeypatch, head, score_name
):
    # linear_mse's raw output was titled a probability, and MSE losses (averaged over the classes)
    # all read 0.03 or 0.01 at two decimals.
    import lightning_hw.callbacks.interpretation as interpretation

    drawn = []
    log_figure = interpretation.log_figure
    monkeypatch.setattr(interpretation, "log_figure", lambda trainer, name, fig, **kw: (drawn.append(fig), log_figure(trainer, name, fig, **kw)))
    HWCLI(args=tiny_args("fit", "--run.name", "r", "--model.init_args.head", head))
    (fig,) = drawn
    assert fig._suptitle.get_text() == f"top losses: predicted / actual / {score_name} of the prediction / loss"
    titles = [ax.get_title().split(" / ") for ax in fig.axes if ax.get_title()]
    assert len(titles) == 9
    losses = [title[3] for title in titles]
    assert len(set(losses)) == 9 and all(len(loss.lstrip("0.").replace(".", "")) >= 3 for loss in losses), losses
    if score_name == "probability":
        assert all(0 <= float(title[2]) <= 1 for title in titles)


def test_reuters_top_loss_bars_are_the_words_that_moved_the_loss(workdir, monkeypatch):
    # Every word of a multi-hot row is 1: bars of the largest inputs were 8 of its words, all 1, at random.
    import lightning_hw.callbacks.interpretation as interpretation
    from conftest import REPO

    from lightning_hw.data.fixtures.classification import write_reuters

    drawn = []
    log_figure = interpretation.log_figure
    monkeypatch.setattr(interpretation, "log_figure", lambda trainer, name, fig, **kw: (drawn.append(fig), log_figure(trainer, name, fig, **kw)))
    write_reuters(workdir / "data")
    HWCLI(args=[
        "fit", "--config", str(REPO / "configs" / "reuters.yaml"), "--data.init_args.root", str(workdir / "data"),
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--run.root", str(workdir / "runs"),
        "--run.wandb", "disabled",
    ])
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 9
    for ax in panels:
        widths = [bar.get_width() for bar in ax.patches]
        labels = [tick.get_text() for tick in ax.get_yticklabels()]
        assert 0 < len(widths) <= 8 and len(set(widths)) == len(widths), widths  # a share each, not 1 for all
        assert [abs(w) for w in widths] == sorted((abs(w) for w in widths), reverse=True)
        assert all(label.endswith(" = 1") for label in labels)  # words present: an absent one moves nothing
        assert ax.get_xlabel() == "input x gradient of the loss (> 0 raised it)"
        # Named by Keras' index conventions, not "feature 1" (the start marker, in every row) or "feature 20"
        assert all(re.fullmatch(r"(<start>|<oov>|word rank \d+) = 1", label) for label in labels), labels
    assert any("word rank" in tick.get_text() for ax in panels for tick in ax.get_yticklabels())


def test_reuters_names_its_columns_for_plots_only(tmp_path):
    from lightning_hw.data.datasets.reuters import Reuters

    data = Reuters(root=str(tmp_path), num_words=12, index_from=4, start_char=2, oov_char=3)
    names = data.plot_feature_names
    assert names[:6] == ["<pad>", "index 1", "<start>", "<oov>", "word rank 0", "word rank 1"]
    assert len(names) == 12 and names[-1] == "word rank 7"
    # feature_names would make predict read a CSV's columns by these names
    assert getattr(data, "feature_names", None) is None


@pytest.mark.parametrize(
    ("callback", "settings", "expected"),
    [
        ("ClassificationInterpretation", "{num_samples: -1}", "ClassificationInterpretation: num_samples must be 0 or more, got -1"),
        ("ClassificationInterpretation", "{top_confused: -2}", "ClassificationInterpretation: top_confused must be 0 or more, got -2"),
        ("ClassificationInterpretation", "{columns: -3}", "ClassificationInterpretation: columns must be 1 or more (or null), got -3"),
        ("ClassificationInterpretation", "{features_shown: -1}", "ClassificationInterpretation: features_shown must be 1 or more, got -1"),
        ("WorstFaces", "{num_samples: -9}", "WorstFaces: num_samples must be 0 or more, got -9"),
        ("WorstFaces", "{columns: 0}", "WorstFaces: columns must be 1 or more (or null), got 0"),
    ],
)
def test_bad_callback_settings_are_one_line_before_training(callback, settings, expected, workdir, capsys):
    """A negative columns trained the whole run, then failed in the test with matplotlib's traceback (status
    "failed"); a negative num_samples or top_confused silently drew and printed nothing."""
    from lightning_hw.cli import main

    (workdir / "bad.yaml").write_text(
        "trainer:\n  callbacks:\n"
        f"    - class_path: lightning_hw.callbacks.interpretation.{callback}\n      init_args: {settings}\n"
    )
    with pytest.raises(SystemExit) as stop:
        main(tiny_run_args("fit", QUICKSTART, workdir / "runs", "--config", str(workdir / "bad.yaml")))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [f"error: {expected}"]
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("subcommand", ["test", "fit"])
def test_a_bad_callback_setting_beside_a_checkpoint_is_said_as_it_is(subcommand, trained_run, capsys):
    """`test --ckpt_path <run's checkpoint> --trainer.callbacks.num_samples -1` blamed the checkpoint: "holds a
    Classifier ..., which does not fit this config (...); run with --config <the run's config.yaml>", the very
    config the command had used. The callback's own line is the error; no evaluation or run is written."""
    from reliability_helpers import error_of

    ckpt = trained_run / "checkpoints" / "last.ckpt"
    before = sorted(p.relative_to(trained_run) for p in trained_run.rglob("*"))
    # fit: a new run from the checkpoint, under the run's config (given first: a later --config replaces the callbacks)
    config = ["--config", str(trained_run / "config.yaml"), "--run.name", "from-trained"] if subcommand == "fit" else []
    code, line = error_of([subcommand, *config, "--ckpt_path", str(ckpt), "--trainer.callbacks.num_samples", "-1"], capsys)
    assert (code, line) == (2, "error: ClassificationInterpretation: num_samples must be 0 or more, got -1")
    assert sorted(p.relative_to(trained_run) for p in trained_run.rglob("*")) == before
    assert not (trained_run.parent / "from-trained").exists()
