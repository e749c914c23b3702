"""FeatureCache: features computed once, reused by the next run, recomputed when the inputs change."""

from __future__ import annotations

import shutil

import pytest
import torch
from transfer_utils import make_task, make_trainer

from lightning_hw.callbacks.feature_cache import FeatureCache
from lightning_hw.callbacks.finetuning import FreezeBackbone
from lightning_hw.data.augment.images import Augment
from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.data.datasets.image_folder import ImageFolder


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "io", classes=("indoor", "outdoor"), per_class=8, size=(36, 40), layout="folder")


def fit(folder, cache_dir, freezer=None, epochs=2, seed=0, image_size=32, **data):
    """One run: a resnet18 (random weights drawn from ``seed``) on the folder, with the cache."""
    torch.manual_seed(seed)
    task = make_task(spec=("flatten", 8), input_shape=(3, image_size, image_size))
    calls = []
    task.net.backbone.register_forward_hook(lambda *args: calls.append(1))
    dm = ImageFolder(root=str(folder), image_size=image_size, batch_size=4, num_workers=0, **data)
    cache = FeatureCache(cache_dir=str(cache_dir), shuffle_seed=1)
    trainer = make_trainer([freezer or FreezeBackbone(), cache], max_epochs=epochs)
    trainer.fit(task, dm)
    return task, dm, cache, len(calls)


def test_features_are_computed_once_then_read_back(folder, tmp_path):
    task, dm, cache, calls = fit(folder, tmp_path / "cache")
    assert cache.events == {"train": "computed", "val": "computed"}
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    # The backbone ran once per batch of the two splits (12 + 3 images, batches of 4), not per epoch.
    assert calls == 3 + 1
    # What was stored is the frozen backbone's output for every training image.
    images, labels = dm.data["train"]
    with torch.no_grad():
        expected = task.net.backbone.eval()(dm.to_model_input(images)).flatten(1)
    stored = torch.load(next((tmp_path / "cache").glob("resnet18-train-*.pt")), weights_only=True)
    assert stored["features"].shape == (12, 512, 1, 1)
    assert torch.cdist(stored["features"].flatten(1), expected).min(dim=1).values.max() < 1e-4
    assert sorted(stored["labels"].tolist()) == sorted(labels.tolist())

    again, _, cache2, calls2 = fit(folder, tmp_path / "cache")
    assert cache2.events == {"train": "hit", "val": "hit"}
    assert calls2 == 0  # the whole second run never ran the backbone
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    # Same seeds, same cached features: the same head.
    assert torch.equal(again.net.head[1].weight, task.net.head[1].weight)


@pytest.mark.parametrize(
    "damage, reason",
    [(b"junk", r"torch.load failed: \w+: .+"), ("cut", r"torch.load failed: \w+: .+"), ("features", "it holds 3 features and 3 labels for 12 samples")],
)
def test_a_damaged_cache_file_is_computed_again_and_says_why(folder, tmp_path, damage, reason):
    """A junk file was said as "is damaged (174812789)": a reader's bare KeyError text."""
    fit(folder, tmp_path / "cache", epochs=1)
    stored = next((tmp_path / "cache").glob("resnet18-train-*.pt"))
    if damage == "cut":
        stored.write_bytes(stored.read_bytes()[:200])
    elif damage == "features":
        contents = torch.load(stored, weights_only=True)
        torch.save({**contents, "features": torch.zeros(3, 512, 1, 1), "labels": torch.zeros(3)}, stored)
    else:
        stored.write_bytes(damage)
    with pytest.warns(UserWarning, match=rf"FeatureCache: {stored} is damaged \({reason}\); its features are computed again where needed \(delete it to stop this warning\)"):
        _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1)
    assert cache.events == {"train": "computed", "val": "hit"}
    assert len(torch.load(stored, weights_only=True)["features"]) == 12  # written again, whole


def test_each_split_is_read_once_whatever_is_stored(folder, tmp_path, monkeypatch):
    """A pass to learn the key, then one to compute the features, read (a streamed folder: decoded) everything twice.

    One pass now digests the inputs, takes the stored rows and runs the backbone on the others.
    """
    passes = []
    source_batches = FeatureCache._source_batches

    def counted(self, trainer, pl_module, split):
        passes.append(split)
        return source_batches(self, trainer, pl_module, split)

    monkeypatch.setattr(FeatureCache, "_source_batches", counted)
    fit(folder, tmp_path / "cache", epochs=1)
    assert sorted(passes) == ["train", "val"]
    passes.clear()
    _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1)  # read back: one pass without the backbone
    assert cache.events == {"train": "hit", "val": "hit"} and sorted(passes) == ["train", "val"]
    passes.clear()
    _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    assert cache.events == {"train": "computed", "val": "computed"}
    assert sorted(passes) == ["train", "val"]


def test_the_folds_of_a_study_compute_each_image_once(folder, tmp_path):
    """Each fold's split was a new key, so a 5-fold study of a frozen backbone ran it over the data 5 times.

    Fold 1 of 2 trains on fold 0's validation images and validates on its training images.
    """
    _, _, cache, calls = fit(folder, tmp_path / "cache", epochs=1, folds=2, fold=0)
    assert cache.events == {"train": "computed", "val": "computed"} and calls > 0
    _, dm, cache, calls = fit(folder, tmp_path / "cache", epochs=1, folds=2, fold=1)
    assert cache.events == {"train": "hit", "val": "hit"} and calls == 0
    # The rows read back are the features fold 1 computes without anything stored.
    _, _, fresh, _ = fit(folder, tmp_path / "fresh", epochs=1, folds=2, fold=1)
    for split in ("train", "val"):
        assert torch.allclose(cache._features[split][0], fresh._features[split][0], atol=1e-5)
        assert torch.equal(cache._features[split][1], fresh._features[split][1])


def test_features_of_another_image_size_in_the_cache_do_not_shape_a_run_read_back(folder, tmp_path):
    """Rows are read into a tensor shaped as the files that hold them, not as the first file found."""
    fit(folder, tmp_path / "cache", epochs=1, image_size=32)  # (512, 1, 1) maps
    _, _, computed, _ = fit(folder, tmp_path / "cache", epochs=1, image_size=64)  # (512, 2, 2) maps
    _, _, cache, calls = fit(folder, tmp_path / "cache", epochs=1, image_size=64)
    assert cache.events == {"train": "hit", "val": "hit"} and calls == 0
    assert torch.equal(cache._features["train"][0], computed._features["train"][0])


def test_a_run_that_fails_gives_back_the_datamodule_and_the_net(folder, tmp_path):
    """Lightning skips ``teardown`` when a stage fails: in a notebook the datamodule kept the cached
    features' loaders, the net took the next run's images for features, and the cache files stayed mapped."""
    torch.manual_seed(0)
    task = make_task(spec=("flatten", 8))

    def fails(*args, **kwargs):
        raise RuntimeError("a bug in the training step")

    task.training_step = fails
    dm = ImageFolder(root=str(folder), image_size=32, batch_size=4, num_workers=0)
    cache = FeatureCache(cache_dir=str(tmp_path / "cache"), shuffle_seed=1)
    with pytest.raises(RuntimeError, match="a bug in the training step"):
        make_trainer([FreezeBackbone(), cache], max_epochs=1).fit(task, dm)
    assert cache.events == {"train": "computed", "val": "computed"}  # the cache was in use
    assert "train_dataloader" not in vars(dm) and not task.net.input_is_features
    assert cache._stored is None and not cache.active


def test_images_added_to_the_folder_are_the_only_ones_computed(folder, tmp_path):
    fit(folder, tmp_path / "cache", epochs=1)
    before = set((tmp_path / "cache").glob("*.pt"))
    extra = write_image_folder(tmp_path / "extra", classes=("indoor", "outdoor"), per_class=2, size=(36, 40), layout="folder", seed=7)
    for image in extra.rglob("*.jpg"):
        shutil.copy(image, folder / image.parent.name / f"extra-{image.name}")
    _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1)
    assert "completed" in cache.events.values()
    digests = {path: torch.load(path, weights_only=True)["digests"] for path in (tmp_path / "cache").glob("*.pt")}
    stored_before = {d for path in before for d in digests[path]}
    written = [d for path in set(digests) - before for d in digests[path]]
    # The 4 new images, and the 1 or 2 that the first run's test split held (its 16 images left 1 for
    # testing; 20 leave 2 and the split is drawn again): nothing stored was computed again.
    assert 4 <= len(written) <= 6 and not stored_before & set(written)
    assert sum(len(features) for features, _ in cache._features.values()) == 18


def test_a_changed_transform_or_backbone_recomputes(folder, tmp_path):
    fit(folder, tmp_path / "cache", epochs=1)
    _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    assert cache.events == {"train": "computed", "val": "computed"}
    _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1, interpolation="nearest")
    assert cache.events == {"train": "computed", "val": "computed"}
    _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1, seed=1)  # other weights
    assert cache.events == {"train": "computed", "val": "computed"}
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 8


def test_after_a_cached_run_the_model_classifies_images(folder, tmp_path):
    task, dm, cache, _ = fit(folder, tmp_path / "cache", epochs=1)
    assert not cache.active and not task.net.input_is_features
    assert not {"train_dataloader", "on_after_batch_transfer"} & set(vars(dm))  # the datamodule is itself again
    assert any(k.startswith("net.backbone.") for k in task.state_dict())  # checkpoints hold the whole net
    x, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    features = cache._features["val"][0]
    with torch.no_grad():
        task.eval()
        from_images = task(x)
        task.net.input_is_features = True
        from_features = task(features)
        task.net.input_is_features = False
    # The same images, in another order: the head gives the same outputs either way.
    torch.testing.assert_close(from_images.sort(dim=0).values, from_features.sort(dim=0).values, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("freezer", "data", "reason"),
    [
        (FreezeBackbone(unfreeze_at_epoch=1), {}, "the backbone unfreezes at epoch 1 (max_epochs 2)"),
        (None, {"augment": Augment(horizontal_flip=True)}, "augmented at random"),
    ],
)
def test_the_cache_stays_off_when_features_would_change(folder, tmp_path, freezer, data, reason, caplog):
    with caplog.at_level("INFO"):
        _, _, cache, calls = fit(folder, tmp_path / "cache", freezer=freezer, **data)
    assert f"FeatureCache: off, {reason}" in caplog.text or reason in caplog.text
    assert cache.events == {} and not (tmp_path / "cache").exists()
    assert calls > 4  # the backbone ran on images every epoch


def test_a_cached_run_logs_the_metrics_of_the_run_without_the_cache(workdir, monkeypatch):
    """The cache only saves time: the head trains on the batches the datamodule would have drawn.

    Both runs go through ``main()`` in this process, one after the other (the second reads no cache).
    """
    import os

    from conftest import REPO, tiny_run_args
    from reliability_helpers import output_of

    (workdir / "no_cache.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning_hw.callbacks.feature_cache.FeatureCache\n"
        "      init_args:\n        enabled: false\n"
    )
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    metrics = {}
    for name, extra in {"cached": [], "images": ["--config", str(workdir / "no_cache.yaml")]}.items():
        args = tiny_run_args(
            "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", *extra, "--trainer.max_epochs", "2",
            "--trainer.limit_train_batches", "1.0", "--data.init_args.image_size", "32", "--run.name", name,
        )
        output_of(*args)
        metrics[name] = (workdir / "runs" / "transfer_demo" / name / "metrics.csv").read_text()
    assert len(list((workdir / "cache").rglob("resnet18-train-*.pt"))) == 1  # the first run did use the cache
    assert metrics["cached"] == metrics["images"]
    # Written as a plain open() would write them (not mkstemp's private 0600): a shared cache is readable.
    umask = os.umask(0)
    os.umask(umask)
    written = [*(workdir / "cache").rglob("*.pt"), workdir / "runs" / "transfer_demo" / "cached" / "config.yaml"]
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o666 & ~umask)}


def test_two_runs_writing_the_same_features_at_once_both_finish(folder, tmp_path, monkeypatch):
    """Another run computing the same features saves them while this one is still writing its file."""
    save = torch.save

    def save_while_another_run_saves(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)
        monkeypatch.setattr(torch, "save", save)
        fit(folder, tmp_path / "cache", epochs=1)  # the other run, from its start to its end, before this write is done
    monkeypatch.setattr(torch, "save", save_while_another_run_saves)
    _, _, cache, _ = fit(folder, tmp_path / "cache", epochs=1)
    assert cache.events["train"] == "computed"  # (its validation features were the other run's by then)
    _, _, again, _ = fit(folder, tmp_path / "cache", epochs=1)
    assert again.events == {"train": "hit", "val": "hit"}  # whole files, read back without a warning
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".pt", ".pt"]  # no temporary file left


def test_a_cache_folder_that_cannot_be_written_is_one_line_before_training(workdir, monkeypatch, capsys):
    from conftest import REPO, tiny_run_args
    from lightning_hw.cli import main

    (workdir / "cache").write_text("a file where the cache folder should be")
    args = tiny_run_args("fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32")
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    with pytest.raises(SystemExit) as exit_info:  # `python -m lightning_hw fit`, in this process
        main(args)
    assert exit_info.value.code == 2
    done = capsys.readouterr()
    errors = [line for line in (done.out + done.err).splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: FeatureCache cannot store features in {workdir / 'cache' / 'features'} (Not a directory); set "
        "LIGHTNING_HW_CACHE (or the callback's cache_dir) to a folder you can write, or turn the cache off with its enabled: false"
    ]
    assert "Traceback" not in done.err and not list((workdir / "runs").rglob("*.ckpt"))


#: a landmark task on a timm backbone that stays frozen, with the feature cache: the E6 net with E5's cache
LANDMARKS_ON_A_FROZEN_BACKBONE = """\
seed_everything: 1
trainer:
  max_epochs: 1
  callbacks:
    - class_path: lightning_hw.callbacks.feature_cache.FeatureCache
finetune:
  unfreeze_at_epoch: null
model:
  class_path: LandmarkRegressor
  init_args:
    output_activation: sigmoid
    plot_samples: 4
    net:
      class_path: lightning_hw.nets.backbones.TimmNet
      init_args:
        model_name: resnet18
        head: [gap]
data:
  class_path: SyntheticFaces
  init_args:
    num_samples: 60
    image_size: 32
    batch_size: 16
"""


def landmark_fit(workdir, name: str, *extra: str) -> str:
    """``fit`` of :data:`LANDMARKS_ON_A_FROZEN_BACKBONE` in this process; what it printed."""
    from conftest import tiny_run_args
    from reliability_helpers import output_of

    config = workdir / "landmarks_frozen.yaml"
    config.write_text(LANDMARKS_ON_A_FROZEN_BACKBONE)
    return output_of(*tiny_run_args("fit", config, workdir / "runs", "--run.name", name, *extra))


def test_landmark_augmentation_keeps_the_cache_off(workdir, monkeypatch, caplog):
    """The landmark sets augment images with their points (``augment``, kept as ``landmark_augment``).

    Features cached from one draw of the augmentation would be served every epoch, and to the
    next run: the augmentation would silently stop.
    """
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    with caplog.at_level("INFO"):  # the callbacks' one-line notes go to Lightning's logger
        landmark_fit(workdir, "augmented", "--data.init_args.augment", "{rotation: 10, horizontal_flip: true}")
    assert "FeatureCache: off, the training images are augmented at random" in caplog.text
    assert caplog.text.count("FeatureCache: off") == 1  # not again for the test after fit
    assert not list((workdir / "cache").rglob("*.pt"))



def test_a_landmark_run_on_cached_features_draws_its_test_faces(workdir, monkeypatch):
    """Cached or not, the landmark run tests the same and draws its test faces from the images."""
    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    cached = landmark_fit(workdir, "cached")
    assert len(list((workdir / "cache").rglob("resnet18-train-*.pt"))) == 1  # the cache was used
    images = landmark_fit(workdir, "images", "--trainer.callbacks", "[]")
    assert printed_lines(cached, "Test ") == printed_lines(images, "Test ")
    for name in ("cached", "images"):
        assert (workdir / "runs" / "landmarks_frozen" / name / "landmarks_test.png").is_file()


def printed_lines(printed: str, start: str) -> list[str]:
    """The printed lines that begin with ``start`` (at least one)."""
    lines = [line for line in printed.splitlines() if line.startswith(start)]
    assert lines, printed[-3000:]
    return lines


def test_a_second_fold_run_from_the_cli_reads_every_feature_back(workdir, monkeypatch, caplog):
    """`fit --data.init_args.folds 2 --data.init_args.fold 1` after fold 0: no image goes through the backbone again."""
    from conftest import REPO, tiny_run_args
    from reliability_helpers import output_of

    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    printed = {}
    for fold in (0, 1):
        args = tiny_run_args(
            "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--trainer.limit_train_batches", "1.0",
            "--trainer.limit_val_batches", "1.0", "--data.init_args.image_size", "32",
            "--data.init_args.folds", "2", "--data.init_args.fold", str(fold), "--run.name", f"demo-fold{fold}",
        )
        with caplog.at_level("INFO"):  # the callbacks' one-line notes go to Lightning's logger
            output_of(*args)
        printed[fold] = "\n".join(caplog.messages)
        caplog.clear()
    assert sorted(line.split(" features ")[0] for line in printed_lines(printed[0], "FeatureCache: ")) == [
        "FeatureCache: test", "FeatureCache: train", "FeatureCache: val"]
    assert all(" computed in " in line for line in printed_lines(printed[0], "FeatureCache: "))
    read_back = printed_lines(printed[1], "FeatureCache: ")
    assert len(read_back) == 3 and all(" read from " in line and " computed" not in line for line in read_back), read_back


def test_a_rerun_names_the_one_file_each_split_is_read_from(workdir, monkeypatch, caplog):
    """A rerun's training features were said as "read from 2 files (<train>, <val>)": the files of every split so far."""
    from conftest import REPO, tiny_run_args
    from reliability_helpers import output_of

    monkeypatch.setenv("LIGHTNING_HW_CACHE", str(workdir / "cache"))
    printed = {}
    for name in ("first", "again"):
        args = tiny_run_args(
            "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--trainer.limit_train_batches", "1.0",
            "--trainer.limit_val_batches", "1.0", "--data.init_args.image_size", "32", "--run.name", name,
        )
        with caplog.at_level("INFO"):  # the callbacks' one-line notes go to Lightning's logger
            output_of(*args)
        printed[name] = "\n".join(caplog.messages)
        caplog.clear()
    features = workdir / "cache" / "features"
    for split in ("train", "val", "test"):
        (stored,) = features.glob(f"resnet18-{split}-*.pt")
        (line,) = printed_lines(printed["again"], f"FeatureCache: {split} features ")
        assert line.endswith(f" read from {stored}"), line
