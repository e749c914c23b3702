"""TimmNet and its head specs: the E5 heads, feature shapes, local weights, preprocessing link."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from lightning_hw.data.fixtures.classification import write_image_folder
from lightning_hw.data.datasets.image_folder import ImageFolder
from lightning_hw.data.preprocessing import link_model_preprocessing
from lightning_hw.errors import ConfigError
from lightning_hw.nets import backbones
from lightning_hw.nets.backbones import TimmNet, find_data_config, output_shape
from lightning_hw.nets.heads import build_head, split_pooling
from lightning_hw.tasks.classification import Classifier

DENSENET201 = (1920, 4, 4)  # DenseNet201's feature map at 128x128: 30,720 values
RESNET152 = (2048, 4, 4)  # ResNet152's: 32,768 values
F, L, B, S, R = nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.Sigmoid, nn.ReLU

# (spec, feature shape, outputs, layer types, trainable parameters), the counts worked out by
# hand: Dense(n) after k inputs has k*n + n weights, BatchNorm(n) 2n.
E5_HEADS = [
    # DenseNet201, Dense(1, sigmoid) output
    (["flatten", 256, "sigmoid"], DENSENET201, 1, [F, L, S, L], 30720 * 256 + 256 + 257),
    (["flatten", 1024, 256, "relu"], DENSENET201, 1, [F, L, L, R, L], 30720 * 1024 + 1024 + 1024 * 256 + 256 + 257),
    (["flatten", 512, 128, "sigmoid"], DENSENET201, 1, [F, L, L, S, L], 15_729_152 + 65_664 + 129),
    (["flatten", 512], DENSENET201, 1, [F, L, L], 15_729_152 + 513),
    (["flatten", 256, "batchnorm"], DENSENET201, 1, [F, L, B, L], 7_864_576 + 512 + 257),
    # ResNet152, Dense(2, softmax) output
    (["flatten", 5000, "relu", 500, "relu"], RESNET152, 2, [F, L, R, L, R, L], 163_845_000 + 2_500_500 + 1_002),
    (["flatten", "1000:relu", "256:relu"], RESNET152, 2, [F, L, R, L, R, L], 32_769_000 + 256_256 + 514),
    (["flatten", 256, "relu"], RESNET152, 2, [F, L, R, L], 8_388_864 + 514),
    (["flatten", 512, "relu", 64, "relu"], RESNET152, 2, [F, L, R, L, R, L], 16_777_728 + 32_832 + 130),
    (["flatten", 1024, "relu", 64, "relu"], RESNET152, 2, [F, L, R, L, R, L], 33_555_456 + 65_600 + 130),
    (["flatten", 1024, "relu", 256, "relu", 32, "relu"], RESNET152, 2, [F, L, R, L, R, L, R, L],
     33_555_456 + 262_400 + 8_224 + 66),
]


@pytest.mark.parametrize(("spec", "shape", "outputs", "types", "params"), E5_HEADS)
def test_e5_heads_have_the_reports_layers_and_parameter_counts(spec, shape, outputs, types, params):
    pooling, layers = split_pooling(spec)
    with torch.device("meta"):  # shapes only: the 166M-parameter head allocates nothing
        head = build_head(layers, shape, outputs, flatten=pooling == "flatten")
    assert [type(m) for m in head] == types
    assert sum(p.numel() for p in head.parameters()) == params
    assert head[-1].out_features == outputs


def test_gap_head_and_dropout_token():
    pooling, layers = split_pooling(["gap", 64, "batchnorm", "dropout:0.5", "relu"])
    head = build_head(layers, (512,), 3, flatten=pooling == "flatten")
    assert pooling == "gap" and [type(m) for m in head] == [L, B, nn.Dropout, R, L]
    assert head[2].p == 0.5 and head[0].in_features == 512


def test_backbone_feature_sizes_are_the_reports():
    assert output_shape("resnet152", (3, 128, 128), "") == RESNET152
    assert output_shape("densenet201", (3, 128, 128), "") == DENSENET201
    assert output_shape("resnet152", (3, 128, 128), "avg") == (2048,)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([256, "batchnorm"], "starts with flatten"),
        (["flatten", "dropout:lots"], "dropout:0.5"),
        (["flatten", "dropout:1.5"], r"\[0, 1\)"),
        (["flatten", "softplus"], "unknown layer"),
        (["flatten", 256, "gap"], "pooling can only be the first token"),
        (["flatten", 0], "must be positive"),
    ],
)
def test_bad_head_specs_are_one_line(spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        pooling, layers = split_pooling(spec)
        build_head(layers, (8,), 2, flatten=False)
    assert "\n" not in str(err.value)


def test_timmnet_classifies_images_and_knows_its_preprocessing():
    net = TimmNet((3, 32, 32), 2, model_name="resnet18", head=["gap", 16, "relu"])
    assert net(torch.rand(3, 3, 32, 32)).shape == (3, 2)
    assert net.feature_shape == (512,)
    config = net.data_config
    assert config["mean"] == pytest.approx((0.485, 0.456, 0.406)) and config["interpolation"] == "bicubic"
    task = Classifier(net, num_classes=2, input_shape=(3, 32, 32))
    assert find_data_config(task) == config
    with pytest.raises(ConfigError, match="channels, height, width"):
        TimmNet((64,), 2)
    with pytest.raises(ConfigError, match="unknown timm model 'resnet_18'; did you mean"):
        TimmNet((3, 32, 32), 2, model_name="resnet_18")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_is_loaded(tmp_path, suffix):
    source = timm.create_model("resnet18", pretrained=False)  # with its ImageNet classifier, as on the hub
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    net = TimmNet((3, 32, 32), 2, model_name="resnet18", weights_file=str(path), head=["gap"])
    expected = source.state_dict()
    loaded = net.backbone.state_dict()
    assert set(loaded) == set(expected) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(loaded[k], expected[k]) for k in loaded)
    fresh = TimmNet((3, 32, 32), 2, model_name="resnet18", head=["gap"])
    assert not torch.equal(fresh.backbone.conv1.weight, expected["conv1.weight"])


def test_weights_of_another_model_or_no_file_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), path)
    with pytest.raises(ConfigError, match="is not a timm resnet18 checkpoint"):
        TimmNet((3, 32, 32), 2, model_name="resnet18", weights_file=str(path))
    with pytest.raises(ConfigError, match="weights file .*missing.pth not found"):
        TimmNet((3, 32, 32), 2, model_name="resnet18", weights_file=str(tmp_path / "missing.pth"))


def test_unreachable_hub_says_to_use_a_weights_file(monkeypatch):
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(builder, "load_state_dict_from_url", offline)
    # The hub answered the probe (no request in tests), then the download failed.
    monkeypatch.setattr(backbones, "_check_hub_reachable", lambda model_name: None)
    with pytest.raises(ConfigError, match="could not load pretrained resnet18 weights .* pass it as weights_file"):
        TimmNet((3, 32, 32), 2, model_name="resnet18", pretrained=True)


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "io", classes=("indoor", "outdoor"), per_class=5, size=(20, 24), layout="folder")


def test_backbone_preprocessing_reaches_the_datamodule(folder):
    task = Classifier(TimmNet((3, 16, 16), 1, model_name="resnet18"), num_classes=2)
    dm = ImageFolder(root=str(folder), image_size=16)
    message = link_model_preprocessing(task, dm)
    assert dm.mean == pytest.approx([0.485, 0.456, 0.406]) and dm.std == pytest.approx([0.229, 0.224, 0.225])
    assert dm.interpolation.value == "bicubic"
    assert message.startswith("Preprocessing from the backbone's timm data config: mean=[0.485")
    # Settings the user chose are kept; a grey datamodule gets the channel average.
    own = ImageFolder(root=str(folder), image_size=16, mean=[0.5] * 3, std=[0.5] * 3, interpolation="nearest")
    assert link_model_preprocessing(task, own) is None
    assert own.mean == [0.5] * 3 and own.interpolation.value == "nearest"
    grey = ImageFolder(root=str(folder), image_size=16, channels=1)
    link_model_preprocessing(task, grey)
    assert grey.mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    grey.setup("fit")
    x, _ = grey.on_after_batch_transfer(next(iter(grey.val_dataloader())), 0)
    assert x.shape[1] == 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("text.pth", b"not a checkpoint\n"),  # torch's refusal advises weights_only=False
        ("junk.pth", b"junk\n"),  # torch's reader said "KeyError: 174812789" ("unk\n" read as a pickle memo key)
        ("empty.pth", b""),  # torch's said "EOFError: "
        ("cut.pth", None),  # half of a real checkpoint: torch's says how files get corrupted
        ("cut.safetensors", None),
    ],
)
def test_an_unreadable_weights_file_is_one_line_that_says_what_to_give(workdir, capsys, name, content):
    """A file in neither weights format is said to be none, with its size; one that is a weights file
    but cannot be read is said to be damaged, with its reader's first sentence."""
    from conftest import REPO, tiny_run_args
    from lightning_hw.cli import main

    path = workdir / name
    if content is None:  # the first half of a whole resnet18 file, as an interrupted download leaves it
        whole = workdir / f"whole{path.suffix}"
        state = timm.create_model("resnet18").state_dict()
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, whole)
        else:
            torch.save(state, whole)
        content = whole.read_bytes()[: whole.stat().st_size // 2]
    path.write_bytes(content)
    args = tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--model.init_args.net.init_args.weights_file", str(path),
    )
    with pytest.raises(SystemExit) as exit_info:  # `python -m lightning_hw fit`, in this process
        main(args)
    assert exit_info.value.code == 2
    done = capsys.readouterr()
    errors = [line for line in (done.out + done.err).splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    advice = "; it must be a timm resnet18 checkpoint: the hub's model.safetensors or torch.save(model.state_dict()) of a timm model"
    if path.stem == "cut":
        assert errors[0].startswith(f"error: cannot read weights file {path} (")
        kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch"
        assert errors[0].endswith(f"): a {kind} file that is damaged (a download cut short?) or holds more than a state_dict{advice}")
    else:
        assert errors[0] == (
            f"error: {path} is not a PyTorch or safetensors weights file ({len(content)} bytes, in neither format: "
            f"a download cut short, or another kind of file saved under its name){advice}"
        )
    assert "weights_only=False" not in errors[0] and "internal miniz error" not in errors[0]
    assert "Traceback" not in done.err and not (workdir / "runs").exists()


@pytest.mark.parametrize("cut", [False, True])
def test_a_numpy_archive_given_as_weights_file_is_named_as_one(workdir, capsys, cut):
    """A ``.npz`` (numpy.savez's zip of ``.npy`` arrays, as Keras or JAX weights get exported) opens as a zip,
    like torch.save's files: it was called "a PyTorch file that is damaged"."""
    import numpy as np

    from conftest import REPO, tiny_run_args
    from reliability_helpers import error_of

    path = workdir / "resnet18.npz"
    np.savez(path, **{name: tensor.numpy() for name, tensor in timm.create_model("resnet18").state_dict().items()})
    if cut:  # an interrupted download: the archive's directory, at its end, is missing
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    args = tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--model.init_args.net.init_args.weights_file", str(path),
    )
    code, line = error_of(args, capsys)
    assert code == 2 and line == (
        f"error: {path} is a NumPy archive (.npz: arrays saved by numpy.savez, as Keras or JAX weights are exported), "
        "not a PyTorch or safetensors weights file; it must be a timm resnet18 checkpoint: the hub's model.safetensors "
        "or torch.save(model.state_dict()) of a timm model"
    )
    assert not (workdir / "runs").exists()


def test_a_weights_file_of_a_deeper_model_of_the_family_is_refused(workdir, capsys):
    """resnet34's file holds every resnet18 tensor, same shapes: timm would load its first blocks and drop the rest."""
    from safetensors.torch import save_file

    from conftest import REPO, tiny_run_args
    from reliability_helpers import error_of

    path = workdir / "resnet34.safetensors"
    save_file(timm.create_model("resnet34").state_dict(), path)
    args = tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--data.init_args.image_size", "32",
        "--model.init_args.net.init_args.weights_file", str(path),
    )
    assert error_of(args, capsys) == (2, (  # `python -m lightning_hw fit`, in this process
        f"error: {path} is not a timm resnet18 checkpoint: it holds 96 tensors that resnet18 does not have "
        "(e.g. layer1.2.bn1.bias), so it is another model's; use the hub's model.safetensors or "
        "torch.save(model.state_dict()) of a timm resnet18"
    ))
    assert not (workdir / "runs").exists()


def test_a_weights_file_holding_buffers_the_model_computes_itself_is_loaded(workdir):
    """A file saved by an older timm holds index buffers now kept out of the state_dict (swin's, coatnet's
    relative_position_index), which timm drops as it loads: it was refused as "another model's"."""
    from safetensors.torch import save_file

    model = timm.create_model("test_coatnet")
    tensors = dict(model.state_dict())
    computed = {name: buffer.contiguous() for name, buffer in model.named_buffers() if name not in tensors}
    assert computed  # the case at hand: buffers outside the state_dict
    path = workdir / "test_coatnet_old_timm.safetensors"
    save_file({**tensors, **computed}, path)
    backbone = backbones.create_backbone("test_coatnet", weights_file=path)
    loaded = backbone.state_dict()
    assert all(torch.equal(loaded[name], tensors[name]) for name in loaded)


@pytest.mark.parametrize(
    ("saved_pool", "head"),
    [("token", "gap"), ("avg", "flatten")],  # the hub's usual ViT file under a gap head; a gap-trained file flattened
)
def test_a_vit_weights_file_whose_final_norm_sits_on_the_other_side_of_the_pooling_is_loaded_as_trained(workdir, saved_pool, head):
    """A timm ViT normalises before pooling (`norm`) when it pools the class token, after it (`fc_norm`) when
    it averages. A file saved from one was refused under the other pooling as "not a timm test_vit checkpoint:
    2 of 78 backbone tensors are missing (e.g. fc_norm.weight)"; it is the model's own file, and loads with its
    own layout: every tensor as trained, the features the saved model computes."""
    from conftest import REPO, tiny_run_args
    from lightning_hw.cli import HWCLI

    source = timm.create_model("test_vit", global_pool=saved_pool).eval()
    path = workdir / f"test_vit_{saved_pool}.pth"
    torch.save(source.state_dict(), path)
    cli = HWCLI(args=tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--trainer.fast_dev_run", "true",
        "--model.init_args.net.init_args.model_name", "test_vit", "--model.init_args.net.init_args.weights_file", str(path),
        "--model.init_args.net.init_args.head", f"[{head}, 8]", "--finetune.unfreeze_at_epoch", "null", "--finetune.last_blocks", "null",
    ))
    backbone = cli.model.net.backbone.eval()
    saved = source.state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in backbone.state_dict().items())
    assert set(saved) - set(backbone.state_dict()) == {"head.weight", "head.bias"}  # the classifier only
    x = torch.rand(2, 3, *source.patch_embed.img_size)
    tokens = source.forward_features(x)  # normalised by `norm` (token pooling) or not yet (average pooling)
    with torch.no_grad():
        expected = tokens[:, source.num_prefix_tokens:].mean(1) if head == "gap" else source.fc_norm(tokens)
        assert torch.allclose(backbone(x).reshape(expected.shape), expected, atol=1e-6)


def test_an_eva_weights_file_whose_final_norm_sits_before_the_pooling_is_loaded_under_a_gap_head(workdir):
    """timm's EVA (and BEiT) take the layout as `use_fc_norm`, not ViT's `fc_norm`: a token-pooled EVA file
    under a gap head was still refused as "not a timm eva02_tiny_patch14_224 checkpoint: 2 of ... backbone
    tensors are missing (e.g. fc_norm.weight)". It loads with its own norm before the average, as trained."""
    from conftest import REPO, tiny_run_args
    from lightning_hw.cli import HWCLI

    name = "eva02_tiny_patch14_224"
    source = timm.create_model(name, global_pool="token").eval()
    path = workdir / f"{name}.pth"
    torch.save(source.state_dict(), path)
    cli = HWCLI(args=tiny_run_args(
        "fit", REPO / "configs" / "transfer_demo.yaml", workdir / "runs", "--trainer.fast_dev_run", "true",
        "--data.init_args.image_size", "224", "--data.init_args.batch_size", "2",
        "--model.init_args.net.init_args.model_name", name, "--model.init_args.net.init_args.weights_file", str(path),
        "--model.init_args.net.init_args.head", "[gap, 8]", "--finetune.unfreeze_at_epoch", "null", "--finetune.last_blocks", "null",
    ))
    backbone = cli.model.net.backbone.eval()
    saved = source.state_dict()
    assert all(torch.equal(tensor, saved[key]) for key, tensor in backbone.state_dict().items())
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        expected = source.forward_features(x)[:, source.num_prefix_tokens:].mean(1)
        assert torch.allclose(backbone(x), expected, atol=1e-5)
