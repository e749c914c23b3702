"""JPEG decoding: libjpeg-turbo behind Pillow's reader, and ImageFolder's ``decoder: nvjpeg`` on the CPU.

``read_image`` hands full-scale JPEGs to TorchCodec (libjpeg-turbo, about twice Pillow's speed)
and must give exactly Pillow's pixels. Of the nvjpeg path everything but nvJPEG itself runs
here (the same decoder library decodes on the CPU): files read by workers, batches decoded in
``on_before_batch_transfer``, resizing on the decoding device, the fallbacks to Pillow, the
error messages. ``tests/test_gpu.py`` compares the GPU's decoding with these results.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_hw.data.datasets.image_folder import ImageFolder
from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.data.io import jpeg_batch
from lightning_hw.data.io.image_files import read_image, read_image_and_size
from lightning_hw.errors import ConfigError, DataError


@pytest.fixture
def photos(tmp_path):
    return write_image_folder(tmp_path / "photos", per_class=12, size=(36, 44))


def decoded(root, decoder, **kwargs):
    dm = ImageFolder(root=str(root), labels="prefix", decoder=decoder, batch_size=5, num_workers=0, **kwargs)
    dm.setup("fit")
    return dm


def every_image(dm: ImageFolder) -> torch.Tensor:
    """The images of all three splits (the split depends on the labels only, not on the decoder)."""
    return torch.cat([dm.data[split][0] for split in ("train", "val", "test")])


def mean_level_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def pillow_only(monkeypatch) -> None:
    """``read_image`` without its TorchCodec fast path: what Pillow alone decodes."""
    monkeypatch.setattr(jpeg_batch, "decode_jpeg_on_cpu", lambda path, channels: None)


def test_full_scale_jpegs_are_decoded_by_libjpeg_turbo_with_pillows_pixels(tmp_path, monkeypatch):
    pytest.importorskip("torchcodec")
    from PIL import Image

    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    photo = Image.fromarray(coarse).resize((96, 72), Image.BICUBIC)
    photo.save(tmp_path / "colour.jpg", quality=90)
    photo.convert("L").save(tmp_path / "grey.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored sideways: turn 90 degrees counter-clockwise to view
    photo.save(tmp_path / "turned.jpg", quality=90, exif=exif)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    cases = [("colour.jpg", 3, None), ("colour.jpg", 3, (72, 96)), ("grey.jpg", 1, None), ("grey.jpg", 3, None),
             ("turned.jpg", 3, None), ("colour.jpg", 1, None), ("colour.jpg", 3, (30, 40)), ("cmyk.jpg", 3, None)]
    calls = []
    fast = jpeg_batch.decode_jpeg_on_cpu
    monkeypatch.setattr(jpeg_batch, "decode_jpeg_on_cpu", lambda path, channels: calls.append(path.name) or fast(path, channels))
    decoded = [read_image_and_size(tmp_path / name, channels, min_size) for name, channels, min_size in cases]
    # Full scale, colour or grey source: libjpeg-turbo. A colour JPEG read as greyscale (Pillow's
    # own RGB -> L weights), a reduced-scale decode and CMYK stay with Pillow.
    assert calls == ["colour.jpg", "colour.jpg", "grey.jpg", "grey.jpg", "turned.jpg"]
    pillow_only(monkeypatch)
    for (name, channels, min_size), (image, size) in zip(cases, decoded):
        expected, expected_size = read_image_and_size(tmp_path / name, channels, min_size)
        assert torch.equal(image, expected), name
        assert size == expected_size, name
    assert decoded[4][0].shape == (3, 96, 72) and decoded[4][1] == (96, 72)  # turned upright


def test_a_damaged_full_scale_jpeg_is_still_named_by_pillow(tmp_path):
    (tmp_path / "cut.jpg").write_bytes((b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4))
    with pytest.raises(DataError, match=r"cannot read image .*cut\.jpg"):
        read_image(tmp_path / "cut.jpg", 3)


def test_full_scale_decoding_matches_pillow_and_reduced_scale_is_within_a_few_levels(photos):
    # 40 px from 36x44 files: Pillow decodes at full scale too (half scale would be too small).
    full_pillow, full_batch = (decoded(photos, d, image_size=(32, 40)).data["train"][0] for d in ("pillow", "nvjpeg"))
    assert full_batch.shape == full_pillow.shape and full_batch.shape[1:] == (3, 32, 40)
    assert mean_level_difference(full_batch, full_pillow) < 0.5
    # 16 px: Pillow decodes the JPEG at half scale, the batched decoder at full scale, then both resize.
    small_pillow, small_batch = (decoded(photos, d, image_size=16).data["train"][0] for d in ("pillow", "nvjpeg"))
    assert 0 < mean_level_difference(small_batch, small_pillow) < 4


def test_torchvision_decoder_gives_the_same_images_as_torchcodec(photos, monkeypatch):
    pytest.importorskip("torchcodec")
    assert jpeg_batch.jpeg_decoder()[0] == "torchcodec"
    with_torchcodec = decoded(photos, "nvjpeg", image_size=20, crop_pct=0.875).data["test"][0]
    monkeypatch.setattr(jpeg_batch, "jpeg_decoder", lambda: ("torchvision.io", jpeg_batch._torchvision_decode))
    with_torchvision = decoded(photos, "nvjpeg", image_size=20, crop_pct=0.875).data["test"][0]
    assert torch.equal(with_torchvision, with_torchcodec)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_are_read_by_workers_and_decoded_before_the_transfer(photos, workers):
    memory = decoded(photos, "nvjpeg", image_size=20)
    stream = ImageFolder(
        root=str(photos), labels="prefix", decoder="nvjpeg", image_size=20, batch_size=5,
        num_workers=workers, in_memory=False,
    )
    stream.setup("fit")
    batches = list(stream.val_dataloader())
    assert isinstance(batches[0][0], jpeg_batch.EncodedImages)  # the workers only read the files
    images = torch.cat([stream.on_before_batch_transfer(batch, 0)[0] for batch in batches])
    assert torch.equal(images, memory.data["val"][0])
    raw_loader = stream.raw_dataloader("test")  # export checks and top-loss figures get pixels
    assert torch.equal(torch.cat([x for x, _ in raw_loader]), memory.data["test"][0])
    assert torch.equal(raw_loader.dataset[1][0], memory.data["test"][0][1])  # one sample, as figures read it


def test_a_streamed_batch_is_one_tensor_of_bytes_not_one_per_file(photos):
    # Each tensor a worker sends holds a file descriptor: 512 files a batch met the 1,024 limit.
    import resource

    for i in range(120):
        (photos / f"cat.{100 + i}.jpg").write_bytes((photos / "cat.0.jpg").read_bytes())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(96, hard), hard))
    try:
        stream = ImageFolder(
            root=str(photos), labels="prefix", decoder="nvjpeg", image_size=20, batch_size=100,
            num_workers=2, in_memory=False, splits=[0.8, 0.1, 0.1],
        )
        stream.setup("fit")
        batches = list(stream.train_dataloader())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    encoded = batches[0][0]
    assert len(encoded) == 100 and encoded.buffer.numel() == sum(len(d) for d in encoded.data)
    assert sum(len(b[0]) for b in batches) == len(stream.stream_items("train"))


def test_files_that_are_not_jpegs_are_read_by_pillow(photos):
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photos / "cat.50.png")
    Image.fromarray(pixels).save(photos / "dog.50.jpg", format="PNG")  # a PNG with a .jpg name
    Image.fromarray(pixels).convert("CMYK").save(photos / "dog.51.jpg", quality=95)  # libjpeg takes CMYK; nvJPEG may not
    pillow, batch = (every_image(decoded(photos, d, image_size=30)) for d in ("pillow", "nvjpeg"))
    assert mean_level_difference(batch, pillow) < 0.5


def test_exif_orientation_is_applied_as_pillow_applies_it(tmp_path):
    from PIL import Image

    root = tmp_path / "phone"
    root.mkdir()
    rng = np.random.default_rng(2)
    for name in [f"{c}.{i}.jpg" for c in ("cat", "dog") for i in range(5)]:
        image = Image.fromarray(np.kron(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)))
        exif = Image.Exif()
        exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to view
        image.save(root / name, quality=95, exif=exif)
    pillow, batch = (every_image(decoded(root, d, image_size=(32, 48))) for d in ("pillow", "nvjpeg"))
    assert mean_level_difference(batch, pillow) < 1


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\xff\xd8\xff\xe0" + b"not the rest of a JPEG" * 4, ".*"), (b"", "the file is empty")],
    ids=["damaged", "empty"],
)
def test_a_bad_file_is_named(photos, in_memory, content, reason):
    (photos / "cat.99.jpg").write_bytes(content)
    dm = ImageFolder(
        root=str(photos), labels="prefix", decoder="nvjpeg", image_size=16, batch_size=40, num_workers=0,
        in_memory=in_memory,
    )
    with pytest.raises(DataError, match=rf"cannot read image .*cat\.99\.jpg: {reason}; delete or replace the file"):
        dm.setup("fit")
        for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
            for batch in loader:  # streamed: decoded where the trainer would, before the transfer
                dm.on_before_batch_transfer(batch, 0)


def test_unknown_decoder_lists_the_choices(photos):
    with pytest.raises(ConfigError, match="decoder must be one of pillow, nvjpeg, got 'nvjepg'"):
        ImageFolder(root=str(photos), decoder="nvjepg")


def test_metadata_names_the_decoder(photos):
    pillow = decoded(photos, "pillow", image_size=16).decode_description()
    batch = decoded(photos, "nvjpeg", image_size=16).decode_description()
    assert pillow["reader"].startswith("Pillow")
    assert "nvJPEG" in batch["reader"] and "full resolution" in batch["reader"]
