"""Any timm model as a feature extractor with a head from a short spec (the E5 transfer nets).

    net:
      class_path: lightning_hw.nets.backbones.TimmNet
      init_args:
        model_name: densenet201
        pretrained: true             # ImageNet weights from the Hugging Face hub
        # weights_file: densenet201.safetensors   # ...or from a file, on an offline machine
        head: [flatten, 256, batchnorm]

The net knows its preprocessing: :attr:`TimmNet.data_config` is timm's data config for
the backbone (mean/std, interpolation, crop), and image datamodules read it through
:func:`find_data_config`, so ImageNet normalisation cannot be forgotten (the report's
ResNet152 lost ~16 points of accuracy that way).
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_hw.errors import ConfigError
from lightning_hw.nets.heads import POOLING, HeadSpec, build_head, split_pooling


#: set while a backbone is built only to read its task's settings: no weights are fetched or read
_WEIGHTS_SKIPPED: contextvars.ContextVar[bool] = contextvars.ContextVar("weights_skipped", default=False)


@contextlib.contextmanager
def without_pretrained_weights() -> Iterator[None]:
    """Backbones built inside keep timm's random initialisation: no hub request, download or weights file read.

    For a task built only to read what its ``__init__`` chooses (a study's objective, see
    :mod:`lightning_hw.studies.task_monitor`): its weights choose nothing there, and fetching
    them cost the study process a hub probe (seconds offline, where the build then failed) or a
    download before the first trial.
    """
    token = _WEIGHTS_SKIPPED.set(True)
    try:
        yield
    finally:
        _WEIGHTS_SKIPPED.reset(token)


def create_backbone(
    model_name: str,
    in_chans: int = 3,
    global_pool: str = "avg",
    pretrained: bool = False,
    weights_file: str | Path | None = None,
) -> nn.Module:
    """A timm model without its classifier (``num_classes=0``), optionally with pretrained weights.

    Args:
        model_name: any name of ``timm.list_models()``, optionally with a weight tag
            (``resnet152.a1h_in1k``).
        in_chans: input channels; pretrained stems are adapted by timm (e.g. summed for grey).
        global_pool: timm pooling: ``"avg"``, ``"max"``, or ``""`` to keep the feature map.
        pretrained: load ImageNet weights from the Hugging Face hub (needs the network).
        weights_file: load the weights from this local file instead (``.safetensors``,
            ``.pth``/``.bin``; timm's naming, e.g. a hub ``model.safetensors`` or
            ``torch.save(timm_model.state_dict(), path)``); implies ``pretrained``.
    """
    import timm

    hub_name = model_name.startswith(("hf-hub:", "hf_hub:", "local-dir:"))  # resolved by timm itself
    if not hub_name and not timm.is_model(model_name.split(".")[0]):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(f"unknown timm model {model_name!r}; {hint}see timm.list_models()")
    kwargs: dict[str, Any] = {"num_classes": 0, "global_pool": global_pool, "in_chans": in_chans}
    if _WEIGHTS_SKIPPED.get():
        return timm.create_model(model_name, pretrained=False, **kwargs)
    if weights_file is not None:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights file {path} not found; give the path of a timm {model_name} checkpoint")
        kwargs.update(_check_weights_file(path, model_name, kwargs))
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        pretrained = True
    elif pretrained:
        _check_hub_reachable(model_name)
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        if not pretrained:
            raise
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if weights_file is not None:
            raise ConfigError(f"{weights_file} is not a timm {model_name} checkpoint ({first_line})") from err
        raise _hub_error(model_name, err) from err


#: seconds the hub may take to answer before a pretrained backbone is refused as offline
HUB_PROBE_TIMEOUT = 3.0
#: the weight files timm looks for in a hub repository, in its order
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _hub_error(model_name: str, err: BaseException) -> ConfigError:
    """The one-line error of hub weights that cannot be loaded, with what to do offline."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return ConfigError(
        f"could not load pretrained {model_name} weights from the Hugging Face hub ({type(err).__name__}: "
        f"{first_line}); offline, download model.safetensors from {_hub_page(model_name)} elsewhere "
        "and pass it as weights_file, or set pretrained: false"
    )


def _check_hub_reachable(model_name: str) -> None:
    """Refuse hub weights at once when they are not cached and the hub does not answer.

    huggingface_hub retries a weights download that finds no network five times with
    backoff (1+2+4+8+8 s), and timm tries two file names, so an offline machine waited
    about a minute for the error. One request without retries, over huggingface_hub's own
    session (its proxies and ``HF_ENDPOINT``), answers the same question in at most
    :data:`HUB_PROBE_TIMEOUT` seconds. Weights already in the hub cache skip the probe:
    timm then loads them offline without retrying.

    Raises:
        ConfigError: the hub did not answer and the weights are not cached.
    """
    repo_id = _hub_repo(model_name)
    if repo_id is None or _hub_cached(repo_id):
        return
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT)  # any answer means reachable
    except Exception as err:  # noqa: BLE001 - no network, a refused proxy, HF_HUB_OFFLINE: all mean offline
        raise _hub_error(model_name, err) from err


def _hub_repo(model_name: str) -> str | None:
    """The hub repository (``repo`` or ``repo@revision``) timm loads the weights from, or ``None`` (another source)."""
    if model_name.startswith(("hf-hub:", "hf_hub:")):
        return model_name.split(":", 1)[1]
    if model_name.startswith("local-dir:"):
        return None
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(model_name).hf_hub_id or None
    except Exception:  # noqa: BLE001 - no pretrained config: let timm say so
        return None


def _hub_cached(repo_id: str) -> bool:
    """Whether one of timm's weight files of ``repo_id`` is in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = repo_id.partition("@")
    return any(isinstance(try_to_load_from_cache(repo, name, revision=revision or None), str) for name in HUB_WEIGHT_FILES)


def _hub_page(model_name: str) -> str:
    """The Hugging Face page of the default weights timm would load for ``model_name``."""
    from timm.models import get_pretrained_cfg

    try:
        hub_id = get_pretrained_cfg(model_name).hf_hub_id
    except Exception:  # noqa: BLE001 - only a hint in an error message
        hub_id = None
    return f"https://huggingface.co/{hub_id}" if hub_id else "https://huggingface.co/timm"


def _check_weights_file(path: Path, model_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fail unless the file holds every tensor of the backbone, and no other model's, by name.

    timm loads without ``strict`` once the classifier is dropped (``num_classes=0``), so a
    file of another model would otherwise leave the backbone silently random, and one of a
    deeper model of the same family (resnet34's for a resnet18) would load its first blocks
    and drop the rest with only a log line.

    Returns:
        the timm arguments that build the backbone in the file's layout (see :func:`_norm_layout_of`).
    """
    import timm
    from timm.models import load_state_dict

    try:
        file_keys = set(load_state_dict(str(path)))
    except Exception as err:  # noqa: BLE001 - any reader failure means "not a checkpoint"
        raise _unreadable_weights_file(path, model_name, err) from None
    with torch.device("meta"):  # names only: nothing is allocated
        expected = timm.create_model(model_name, pretrained=False, **kwargs).state_dict()
        layout, expected = _built_in_layout(model_name, kwargs, _norm_layout_of(file_keys, expected), expected)
        # The whole model (classifier, default pooling) names what a file of it may hold besides, and so do
        # the buffers it computes itself (swin's relative_position_index, attn_mask): not in its state_dict
        # now, but in files that older timm versions saved, and dropped by timm as it loads them.
        whole = {k: v for k, v in {**kwargs, **layout}.items() if k not in ("num_classes", "global_pool")}
        whole_model = timm.create_model(model_name, pretrained=False, **whole)
        known = set(expected) | set(whole_model.state_dict()) | {name for name, _ in whole_model.named_buffers()}
    missing = [k for k in expected if k not in file_keys and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(
            f"{path} is not a timm {model_name} checkpoint: {len(missing)} of {len(expected)} backbone tensors "
            f"are missing (e.g. {missing[0]}); use the hub's model.safetensors or "
            "torch.save(model.state_dict()) of a timm model"
        )
    unexpected = sorted(k for k in file_keys if k not in known)
    if unexpected:
        raise ConfigError(
            f"{path} is not a timm {model_name} checkpoint: it holds {len(unexpected)} tensors that {model_name} "
            f"does not have (e.g. {unexpected[0]}), so it is another model's; use the hub's model.safetensors "
            f"or torch.save(model.state_dict()) of a timm {model_name}"
        )
    return layout


def _built_in_layout(
    model_name: str, kwargs: dict[str, Any], fc_norm: dict[str, Any], expected: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The timm arguments that build the backbone with the file's final norm, and the state_dict they give.

    timm's ViT and DeiT name the argument ``fc_norm``, its EVA and BEiT ``use_fc_norm``: the one the model
    takes is used. A model that moves its norm but takes neither is checked as it is (and refused).

    Args:
        model_name: the timm model.
        kwargs: its other arguments.
        fc_norm: ``{"fc_norm": bool}`` from :func:`_norm_layout_of`, or ``{}`` (the file's layout is the model's).
        expected: the state_dict of the model built with ``kwargs`` alone.
    """
    import timm

    for name in ("fc_norm", "use_fc_norm") if fc_norm else ():
        layout = {name: fc_norm["fc_norm"]}
        try:
            return layout, timm.create_model(model_name, pretrained=False, **kwargs, **layout).state_dict()
        except TypeError:  # not this model's argument
            continue
    return {}, expected


def _norm_layout_of(file_keys: set[str], expected: dict[str, Any]) -> dict[str, Any]:
    """timm's ``fc_norm`` argument that gives the backbone the file's final norm, where the pooling moved it.

    A timm ViT (and its kin: DeiT, EVA, BEiT) normalises its tokens before pooling (``norm``) when it
    pools the class token, and after pooling (``fc_norm``) when it averages them. The hub's
    files are mostly the former: a ``gap`` head (average pooling) would expect ``fc_norm`` and
    refuse them as another model's, and timm itself would drop their ``norm`` and leave
    ``fc_norm`` at its initial values. Built with the file's layout (``fc_norm=False`` keeps
    ``norm`` before the average, as timm's CLIP ViTs do), every trained tensor is used as trained.

    Returns:
        ``{"fc_norm": bool}`` when the file has the other layout than the backbone, else ``{}``.
    """
    def has(keys: Any, prefix: str) -> bool:
        return any(str(key).startswith(prefix) for key in keys)

    file_fc_norm, file_norm = has(file_keys, "fc_norm."), has(file_keys, "norm.")
    model_fc_norm, model_norm = has(expected, "fc_norm."), has(expected, "norm.")
    if file_fc_norm != file_norm and model_fc_norm != model_norm and file_fc_norm != model_fc_norm:
        return {"fc_norm": file_fc_norm}
    return {}


def _unreadable_weights_file(path: Path, model_name: str, err: Exception) -> ConfigError:
    """The one-line error of a weights file its reader failed on, saying whether it is a weights file at all.

    A file of another kind (a download cut short at 0 bytes, an HTML page saved under the file's
    name, a plain pickle) reaches torch's legacy reader, whose own error is then a stray
    ``KeyError: 174812789`` (a byte read as a pickle opcode) or ``EOFError``: no word of what is wrong.
    """
    advice = f"it must be a timm {model_name} checkpoint: the hub's model.safetensors or torch.save(model.state_dict()) of a timm model"
    if isinstance(err, OSError):  # not its content: the file could not be opened (permissions, a folder)
        return ConfigError(f"cannot read weights file {path} ({type(err).__name__}: {err.strerror or err}); {advice}")
    kind = _weights_file_kind(path)
    if kind == "NumPy":
        return ConfigError(
            f"{path} is a NumPy archive (.npz: arrays saved by numpy.savez, as Keras or JAX weights are exported), "
            f"not a PyTorch or safetensors weights file; {advice}"
        )
    if kind is None:
        return ConfigError(
            f"{path} is not a PyTorch or safetensors weights file ({path.stat().st_size} bytes, in neither format: "
            f"a download cut short, or another kind of file saved under its name); {advice}"
        )
    # The first sentence says what is wrong; the readers' own advice after it does not fit here
    # (torch's "retry with weights_only=False" would run code from the file, which this never does).
    reason = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
    return ConfigError(
        f"cannot read weights file {path} ({type(err).__name__}: {reason}): a {kind} file that is damaged (a download "
        f"cut short?) or holds more than a state_dict; {advice}"
    )


def _weights_file_kind(path: Path) -> str | None:
    """Which format ``path`` is by its first bytes: ``"safetensors"``, ``"PyTorch"``, ``"NumPy"`` or ``None`` (neither).

    torch.save writes a zip archive (or, before torch 1.6, a pickle that opens with torch's magic
    number); safetensors opens with the 8-byte length of a JSON header. numpy.savez writes a zip
    archive too, whose members are ``<name>.npy`` files: the first member's name, in the local
    header at the start, tells the two apart (torch's members sit in a folder, ``<name>/data.pkl``
    first), also in a file cut short.
    """
    import pickle

    from torch.serialization import MAGIC_NUMBER

    try:
        with path.open("rb") as file:
            head = file.read(16)
            first_member = _first_zip_member(file) if head.startswith(b"PK\x03\x04") else ""
        size = path.stat().st_size
    except OSError:
        return None
    legacy = pickle.dumps(MAGIC_NUMBER, protocol=2)[2:-1]  # the number as a pickle opcode, after the protocol
    if first_member.endswith(".npy"):
        return "NumPy"
    # A zip's first entry header (not its directory, at the end: a file cut short still opens like this).
    if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[2 : 2 + len(legacy)] == legacy):
        return "PyTorch"
    if len(head) >= 9 and 8 + int.from_bytes(head[:8], "little") <= size and head[8:9] == b"{":
        return "safetensors"
    return None


def _first_zip_member(file: Any) -> str:
    """The name of a zip archive's first member, from the local file header at its start ("" if cut short)."""
    file.seek(26)  # the header's name length (2 bytes, little-endian) and extra field length, then the name
    lengths = file.read(4)
    if len(lengths) < 4:
        return ""
    return file.read(int.from_bytes(lengths[:2], "little")).decode("utf-8", "replace")


def output_shape(model_name: str, input_shape: Sequence[int], global_pool: str) -> tuple[int, ...]:
    """Shape of one backbone output for one input, found without computing anything.

    The model is built on PyTorch's ``meta`` device, where tensors have shapes but no
    data, so even ResNet152 answers in well under a second.
    """
    import timm

    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False, num_classes=0, global_pool=global_pool,
                                  in_chans=input_shape[0]).eval()  # eval: batch norm accepts 1x1 maps
        out = model(torch.empty(1, *input_shape))
    return tuple(out.shape[1:])


class TimmNet(nn.Module):
    """A timm backbone (its classifier removed) followed by a head from a short spec.

    Built by the task as ``TimmNet(input_shape, num_outputs)`` with the arguments below
    from the config. :attr:`backbone` is the part that the
    :class:`~lightning_hw.callbacks.finetuning.FreezeBackbone` callback freezes and
    unfreezes and whose outputs :class:`~lightning_hw.callbacks.feature_cache.FeatureCache`
    stores; :attr:`head` is trained from scratch.

    Args:
        input_shape: ``(channels, height, width)`` of one image (from the datamodule).
        num_outputs: width of the output layer (from the task's output head).
        model_name: timm model name, e.g. ``resnet152``, ``densenet201``, ``resnet18``.
        pretrained: ImageNet weights from the Hugging Face hub.
        weights_file: the weights from a local file instead (offline machines); see
            :func:`create_backbone`.
        head: the head spec, e.g. ``[flatten, 1024, relu, 64, relu]``; see
            :mod:`lightning_hw.nets.heads`. ``flatten`` keeps the backbone's whole feature
            map (as the report did); ``gap``/``gmp`` pool it inside the backbone.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        model_name: str = "resnet18",
        pretrained: bool = False,
        weights_file: str | None = None,
        head: list[int | str] = ["gap"],  # noqa: B006 - jsonargparse shows list defaults; never mutated
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"TimmNet needs image inputs shaped (channels, height, width), the data gives {tuple(input_shape)}"
            )
        pooling, layers = split_pooling(head)
        self.model_name = model_name
        self.head_spec: HeadSpec = list(head)
        global_pool = POOLING[pooling]
        self.backbone = create_backbone(model_name, input_shape[0], global_pool, pretrained, weights_file)
        self.feature_shape = output_shape(model_name, input_shape, global_pool)
        self.head = build_head(layers, self.feature_shape, num_outputs, flatten=pooling == "flatten")
        #: set by FeatureCache while the run feeds cached backbone outputs instead of images
        self.input_is_features = False

    @property
    def data_config(self) -> dict[str, Any]:
        """timm's preprocessing for this backbone: ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``..."""
        import timm.data

        return timm.data.resolve_model_data_config(self.backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_is_features:
            x = self.backbone(x)
        return self.head(x)

    def backbone_fingerprint(self) -> str:
        """A digest of the backbone's architecture and every weight and buffer.

        It names the features the backbone computes, whatever the weights' origin (hub,
        file or a seeded random initialisation), for the feature cache key.
        """
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.model_name.encode())
        digest.update(repr(self.backbone).encode())
        for name, tensor in self.backbone.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        return digest.hexdigest()


def find_data_config(module: nn.Module | None) -> dict[str, Any] | None:
    """The timm data config of the first submodule that has one (a :class:`TimmNet`), else ``None``.

    Image datamodules call this with their trainer's LightningModule to take the
    backbone's preprocessing without the user repeating it.
    """
    if module is None:
        return None
    for sub in module.modules():
        if isinstance(sub, TimmNet):
            return sub.data_config
    return None
