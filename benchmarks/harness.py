"""Shared pieces of the epoch-time benchmarks: synthetic data, the plain loop, the timing.

The scripts in this directory time ``lightning_hw fit`` (built by :class:`~lightning_hw.cli.HWCLI`
from a config, with the callbacks and loggers a user gets: CSV, W&B offline, the
checkpoint, the progress bar) against a plain PyTorch loop that trains the same model on
the same tensors with the same batch size, optimizer and seed, in one process. Repeats of
the kinds are interleaved, so that load from other processes on a shared machine hits
all alike, and medians are compared. Each fit runs one warm-up epoch that is not timed.

The data is synthetic (random tensors of the real datasets' shapes and dtypes, labels
from a random linear teacher so the nets learn): the ratio measures framework overhead,
which does not depend on the values.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback

from lightning_hw.data.base import InMemoryDataModule, Split, standardize_splits

#: Trainer settings of the "Lightning floor" arm: the same task and data with Lightning's
#: loop alone (no logger, checkpoint, progress bar or summary), to show what is left.
FLOOR = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}

Times = list[tuple[float, float]]  # (wall, CPU) seconds per epoch


class SyntheticTabular(InMemoryDataModule):
    """Random tabular features; the datamodule the benchmark configs name.

    Args:
        sizes: samples in the train, val and test splits.
        num_features: features per sample.
        num_classes: number of classes.
        multi_hot: 0/1 features with ``density`` ones (bag of words, as Reuters), else Gaussian.
        density: fraction of ones in multi-hot features.
        data_seed: seed of the data.
        **kwargs: see :class:`~lightning_hw.data.base.InMemoryDataModule`.
    """

    def __init__(
        self,
        sizes: tuple[int, int, int] = (1400, 400, 200),
        num_features: int = 20,
        num_classes: int = 4,
        multi_hot: bool = False,
        density: float = 0.05,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sizes = tuple(sizes)
        self.num_features = num_features
        self._num_classes = num_classes
        self.multi_hot = multi_hot
        self.density = density
        self.data_seed = data_seed

    @property
    def class_names(self) -> list[str]:
        return [str(i) for i in range(self._num_classes)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.num_features,)

    def load_splits(self) -> dict[str, Split]:
        return make_tabular(self.sizes, self.num_features, self._num_classes, self.multi_hot, self.density, self.data_seed)


def make_tabular(
    sizes: tuple[int, ...], num_features: int, num_classes: int, multi_hot: bool, density: float, seed: int
) -> dict[str, Split]:
    """The splits :class:`SyntheticTabular` serves (the plain loop uses them directly)."""
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    if multi_hot:
        x = (torch.rand(n, num_features, generator=g) < density).float()
    else:
        x = torch.randn(n, num_features, generator=g)
    teacher = torch.randn(num_features, num_classes, generator=g)
    y = (x @ teacher + 0.5 * torch.randn(n, num_classes, generator=g)).argmax(dim=1)
    parts = torch.split(torch.arange(n), list(sizes))
    return {name: (x[idx], y[idx]) for name, idx in zip(("train", "val", "test"), parts)}


def clock() -> tuple[float, float]:
    """Wall-clock time and this process's CPU time (all its threads), in seconds."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clock()
    return now[0] - start[0], now[1] - start[1]


class EpochStarts(Callback):
    """Records the time at the start of every training epoch (and at the end of the fit).

    The difference of two consecutive starts is one whole epoch as the user waits for
    it: training steps, validation, logging, checkpointing and every other callback.
    """

    def __init__(self) -> None:
        self.starts: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(clock())

    def on_fit_end(self, trainer, pl_module) -> None:
        self.starts.append(clock())

    def durations(self) -> Times:
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self.starts, self.starts[1:])]


@dataclass
class Experiment:
    """One benchmark: the config a user would run, and the same thing as a plain loop (and Keras).

    Args:
        name: e.g. ``E7``.
        config: the ``lightning_hw fit`` config (a dict in the YAML layout).
        model: builds the network (the same class the config names).
        optimizer: builds the optimizer from the parameters.
        loss: loss of raw outputs and integer targets.
        data: the train/val/test tensors (the ones the datamodule serves).
        batch_size: training batch size; evaluation uses the same.
        standardize: whether the datamodule standardises (the plain loop then does too).
        keras_model: builds and compiles the same model in Keras (used if TensorFlow is installed).
        notes: lines printed before the results.
    """

    name: str
    config: dict
    model: Callable[[], torch.nn.Module]
    optimizer: Callable[[Any], torch.optim.Optimizer]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    data: dict[str, Split]
    batch_size: int
    standardize: bool = False
    keras_model: Callable[[], Any] | None = None
    notes: list[str] = field(default_factory=list)

    def splits(self) -> dict[str, Split]:
        return standardize_splits(self.data) if self.standardize else self.data


class _Batches:
    """Batches of in-memory tensors: indexed by a new permutation each epoch (shuffle), else sliced in order."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.x.shape[0] // self.batch_size)

    def __iter__(self):
        n, bs = self.x.shape[0], self.batch_size
        if not self.shuffle:  # slices: no copy
            for i in range(0, n, bs):
                yield self.x[i : i + bs], self.y[i : i + bs]
            return
        order = torch.randperm(n, generator=self.generator)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            yield self.x[idx], self.y[idx]


def plain_fit(exp: Experiment, epochs: int, seed: int) -> tuple[Times, float]:
    """Train with a hand-written loop; returns the (wall, CPU) time of every epoch and the last val accuracy.

    This is the loop a careful PyTorch user writes for data in memory: a fresh permutation
    per epoch, batches by indexing (no per-sample ``Dataset``/``collate``), train loss and
    accuracy accumulated as tensors and read once per epoch, then validation under
    ``no_grad``. It writes no checkpoint or log and shows no progress.
    """
    data = exp.splits()
    (x, y), (vx, vy) = data["train"], data["val"]
    torch.manual_seed(seed)
    model = exp.model()
    optimizer = exp.optimizer(model.parameters())
    train, val = _Batches(x, y, exp.batch_size, True, seed), _Batches(vx, vy, exp.batch_size, False, seed)
    durations: Times = []
    history = []
    for _ in range(epochs):
        start = clock()
        model.train()
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        for xb, yb in train:
            out = model(xb)
            loss = exp.loss(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * yb.shape[0]
            correct += (out.detach().argmax(1) == yb).sum()
        model.eval()
        with torch.no_grad():
            val_loss = torch.zeros(())
            val_correct = torch.zeros((), dtype=torch.long)
            for xb, yb in val:
                out = model(xb)
                val_loss += exp.loss(out, yb) * out.shape[0]
                val_correct += (out.argmax(1) == yb).sum()
        history.append(
            {
                "train/loss": (loss_sum / x.shape[0]).item(),
                "train/acc": (correct / x.shape[0]).item(),
                "val/loss": (val_loss / vx.shape[0]).item(),
                "val/acc": (val_correct / vx.shape[0]).item(),
            }
        )
        durations.append(since(start))
    return durations, history[-1]["val/acc"]


def lightning_fit(
    exp: Experiment,
    epochs: int,
    seed: int,
    wandb: str,
    root: Path,
    trainer: dict | None = None,
    presets: tuple[Path, ...] = (),
    timer: str = "harness.EpochStarts",
) -> tuple[Times, float]:
    """Run ``lightning_hw fit`` on the experiment's config; returns the epoch times and the last val/acc.

    Args:
        exp: the experiment.
        epochs: epochs to run.
        seed: ``seed_everything``.
        wandb: the ``run.wandb`` mode.
        root: ``run.root`` (a temporary directory).
        trainer: trainer settings added to the config (e.g. :data:`FLOOR`).
        presets: more ``--config`` files stacked after the experiment's (``configs/trainer/gpu.yaml``).
        timer: class path of the :class:`EpochStarts` callback to add.
    """
    from lightning_hw.cli import HWCLI

    config = yaml.safe_load(yaml.safe_dump(exp.config))
    config["seed_everything"] = seed
    config.setdefault("trainer", {}).update({"max_epochs": epochs, **(trainer or {})})
    config["trainer"].setdefault("callbacks", []).append({"class_path": timer})
    config.setdefault("run", {}).update({"root": str(root), "wandb": wandb, "test_after_fit": False})
    path = root / f"{exp.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["fit", "--config", str(path)]
    for preset in presets:
        args += ["--config", str(preset)]
    cli = HWCLI(args=[*args, "--run.group", exp.name])
    epoch_timer = next(c for c in cli.trainer.callbacks if isinstance(c, EpochStarts))
    acc = cli.trainer.callback_metrics.get("val/acc", torch.tensor(float("nan")))
    return epoch_timer.durations(), float(acc)


def bare_lightning_fit(exp: Experiment, epochs: int, seed: int) -> tuple[Times, float]:
    """Lightning's loop alone: the plain loop's model, loss and batches in a minimal LightningModule.

    No logger, checkpoint, progress bar, model summary, metrics or callbacks of ours: the
    difference to the plain loop is what ``Trainer.fit`` itself costs per step, the floor
    under any Lightning-based tool on this machine.
    """
    from lightning.pytorch import LightningModule, Trainer

    data = exp.splits()
    (x, y), (vx, vy) = data["train"], data["val"]

    class Bare(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = exp.model()
            self.correct = torch.zeros((), dtype=torch.long)

        def training_step(self, batch, batch_idx):
            return exp.loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            out = self.net(batch[0])
            self.correct += (out.argmax(1) == batch[1]).sum()
            return exp.loss(out, batch[1])

        def on_validation_epoch_start(self) -> None:
            self.correct.zero_()

        def configure_optimizers(self):
            return exp.optimizer(self.parameters())

    torch.manual_seed(seed)
    model, timer = Bare(), EpochStarts()
    trainer = Trainer(
        max_epochs=epochs, callbacks=[timer], num_sanity_val_steps=0, accelerator="cpu", devices=1, **FLOOR,
    )
    trainer.fit(model, _Batches(x, y, exp.batch_size, True, seed), _Batches(vx, vy, exp.batch_size, False, seed))
    return timer.durations(), float(model.correct) / vx.shape[0]


def keras_available() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def keras_fit(exp: Experiment, epochs: int, seed: int) -> tuple[Times, float]:
    """Train the experiment's Keras model on the same arrays; returns epoch times and the last val accuracy."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    data = exp.splits()
    (x, y), (vx, vy) = ((t.numpy() for t in data[s]) for s in ("train", "val"))
    model = exp.keras_model()
    times: Times = []

    class Timer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = clock()

        def on_epoch_end(self, epoch, logs=None):  # after Keras' validation pass
            times.append(since(self.start))

    history = model.fit(
        x, y, batch_size=exp.batch_size, epochs=epochs, validation_data=(vx, vy),
        shuffle=True, verbose=0, callbacks=[Timer()],
    )
    return times, float(history.history["val_accuracy"][-1])


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {load:.1f}"
    )


def _median(times: Times, which: int) -> float:
    return statistics.median(t[which] for t in times)


def compare(exp: Experiment, repeats: int, epochs: int, wandb: str, floor: bool, seed: int = 42) -> float:
    """Interleave ``repeats`` fits of each kind; print the ratios of median epoch times; return the wall one.

    Every fit runs ``epochs + 1`` epochs; the first (warm-up: allocator, lazy imports,
    first checkpoint) is dropped. The headline is wall-clock time; the ratio of CPU time
    (this process, all its threads) is printed too because it is much less disturbed by
    other processes on a shared machine.
    """
    arms: dict[str, Callable[[Path], tuple[Times, float]]] = {
        "plain loop": lambda root: plain_fit(exp, epochs + 1, seed),
        "lightning_hw fit": lambda root: lightning_fit(exp, epochs + 1, seed, wandb, root),
    }
    if floor:
        arms["Lightning floor"] = lambda root: lightning_fit(exp, epochs + 1, seed, wandb, root, trainer=FLOOR)
        arms["bare Lightning"] = lambda root: bare_lightning_fit(exp, epochs + 1, seed)
    if keras_available() and exp.keras_model is not None:
        arms["Keras"] = lambda root: keras_fit(exp, epochs + 1, seed)
    times: dict[str, Times] = {name: [] for name in arms}
    accuracy: dict[str, list[float]] = {name: [] for name in arms}
    print(f"{exp.name}: {machine()}")
    for note in exp.notes:
        print(f"{exp.name}: {note}")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            line = []
            for name, fit in arms.items():
                epoch_times, acc = fit(Path(tmp))
                times[name] += epoch_times[1:]
                accuracy[name].append(acc)
                line.append(f"{name} {_median(epoch_times[1:], 0) * 1e3:.1f} ms")
            print(f"{exp.name}: repeat {r + 1}/{repeats}: median epoch: " + ", ".join(line), flush=True)
    plain = times["plain loop"]
    for name, epoch_times in times.items():
        print(
            f"{exp.name}: {name:16s} median epoch {_median(epoch_times, 0) * 1e3:8.1f} ms wall, "
            f"{_median(epoch_times, 1) * 1e3:8.1f} ms CPU over {len(epoch_times)} epochs; "
            f"last val acc {statistics.median(accuracy[name]):.3f}"
        )
    for name in arms:
        if name != "plain loop":
            wall = _median(times[name], 0) / _median(plain, 0)
            cpu = _median(times[name], 1) / _median(plain, 1)
            print(f"{exp.name}: RATIO {name} / plain loop = {wall:.2f} (wall clock), {cpu:.2f} (CPU time)")
    if not keras_available():
        print(f"{exp.name}: Keras comparison skipped: TensorFlow is not installed (pip install tensorflow to add it)")
    print(f"{exp.name}: lightning_hw runs used W&B {wandb}")
    return _median(times["lightning_hw fit"], 0) / _median(plain, 0)


def main(experiment: Callable[[], Experiment], description: str) -> None:
    """Command line of the epoch-time scripts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved fits of each kind (default 5)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per fit, after one warm-up epoch (default 5)")
    parser.add_argument(
        "--wandb", default="offline", choices=["offline", "disabled"],
        help="W&B mode of the lightning_hw runs (default offline: what a user without a W&B login gets)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument(
        "--floor", action="store_true",
        help="also time our task without logger, checkpoint and progress bar ('Lightning floor'), and "
        "the plain loop's model in a minimal LightningModule ('bare Lightning': Lightning's loop alone)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    compare(experiment(), args.repeats, args.epochs, args.wandb, args.floor)


def gpu_or_smoke(script: str, smoke: bool) -> torch.device | None:
    """The device a GPU benchmark runs on: the CPU for ``--smoke``, else CUDA with gpu.yaml's speed settings.

    Returns ``None`` (after printing why) when there is no CUDA GPU and no ``--smoke``.
    """
    if smoke:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print(f"{script}: skipped: no CUDA GPU here (torch.cuda.is_available() is False). Run it on a machine with "
              "an NVIDIA GPU, or with --smoke to check the script on the CPU.")
        return None
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    return torch.device("cuda")


def mixed_precision_step(model, optimizer, scaler, dtype: torch.dtype, x: torch.Tensor, y: torch.Tensor) -> None:
    """One training step in autocast (bf16, or fp16 with the gradient scaler), as gpu.yaml trains."""
    import torch.nn.functional as F

    with torch.autocast(x.device.type, dtype=dtype):
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
