"""Pathology foundation models: a table of their settings and a timm-based loader.

``timm`` (and, for some models, ``transformers`` or ``conch``) are optional and
imported only when such an encoder is built. Weights are never downloaded: they
come from ``weights=`` or the local Hugging Face cache (see
:mod:`lnmkit.features._weights`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from lnmkit.features._registry import register_prefix
from lnmkit.features._weights import find_weights, load_state_dict, match_state_dict
from lnmkit.features.encoders._torch import IMAGENET_MEAN, IMAGENET_STD, TorchTileEncoder

__all__ = ["PathologyEncoderSpec", "PATHOLOGY_ENCODERS", "pathology_encoders", "TimmEncoder",
           "import_timm"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
_HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
_TIMM_PIP = "pip install torch==<your torch version> timm"


@dataclass(frozen=True)
class PathologyEncoderSpec:
    """How to build and feed one published pathology tile encoder.

    Attributes
    ----------
    key : str
        Short lnmkit name (also accepted by ``get_encoder``).
    repo_id : str
        Hugging Face repository of the weights (``get_encoder("hf-hub:<repo_id>")``).
    backend : {"timm", "transformers", "conch"}
        Library that defines the architecture.
    dim : int
        Output feature length.
    input_size : int
        Input side length in pixels.
    mean, std : tuple of float
        Per-channel normalisation of [0, 1] RGB input.
    mpp : float
        Recommended microns per pixel (0.5 = 20x).
    output : {"cls", "cls+mean"}
        ``"cls"``: class token (pooled output); ``"cls+mean"``: class token
        concatenated with the mean of the patch tokens (Virchow/Virchow2).
    architecture : str
        timm model name (timm backend).
    timm_kwargs : dict
        ``timm.create_model`` keyword arguments; ``"SwiGLUPacked"`` and ``"SiLU"``
        strings stand for ``timm.layers.SwiGLUPacked`` and ``torch.nn.SiLU``.
    prefix_tokens : int
        Class plus register tokens skipped before averaging patch tokens.
    weight_files : tuple of str
        File names of the weights in the repository.
    """

    key: str
    repo_id: str
    backend: Literal["timm", "transformers", "conch"]
    dim: int
    input_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    mpp: float = 0.5
    output: Literal["cls", "cls+mean"] = "cls"
    architecture: str = ""
    timm_kwargs: dict = field(default_factory=dict)
    prefix_tokens: int = 1
    weight_files: tuple = ("pytorch_model.bin",)


_SWIGLU = {"mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}

PATHOLOGY_ENCODERS: dict[str, PathologyEncoderSpec] = {s.key: s for s in [
    PathologyEncoderSpec(
        "uni", "MahmoodLab/UNI", "timm", 1024, architecture="vit_large_patch16_224",
        timm_kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0,
                     "dynamic_img_size": True}),
    PathologyEncoderSpec(
        "uni2-h", "MahmoodLab/UNI2-h", "timm", 1536, architecture="vit_giant_patch14_224",
        timm_kwargs={"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24,
                     "init_values": 1e-5, "embed_dim": 1536, "mlp_ratio": 2.66667 * 2,
                     "num_classes": 0, "no_embed_class": True, "reg_tokens": 8,
                     "dynamic_img_size": True, **_SWIGLU}),
    PathologyEncoderSpec(
        "conch", "MahmoodLab/CONCH", "conch", 512, input_size=448, mean=_CLIP_MEAN, std=_CLIP_STD,
        architecture="conch_ViT-B-16"),
    PathologyEncoderSpec(
        "virchow2", "paige-ai/Virchow2", "timm", 2560, output="cls+mean", prefix_tokens=5,
        architecture="vit_huge_patch14_224",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "reg_tokens": 4,
                     "mlp_ratio": 5.3375, "global_pool": "", "dynamic_img_size": True, **_SWIGLU},
        weight_files=("model.safetensors", "pytorch_model.bin")),
    PathologyEncoderSpec(
        "h-optimus-0", "bioptimus/H-optimus-0", "timm", 1536, mean=_HOPTIMUS_MEAN, std=_HOPTIMUS_STD,
        architecture="vit_giant_patch14_reg4_dinov2",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "global_pool": "token",
                     "dynamic_img_size": True},
        weight_files=("pytorch_model.bin", "model.safetensors")),
    PathologyEncoderSpec(
        "h-optimus-1", "bioptimus/H-optimus-1", "timm", 1536, mean=_HOPTIMUS_MEAN, std=_HOPTIMUS_STD,
        architecture="vit_giant_patch14_reg4_dinov2",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "global_pool": "token",
                     "dynamic_img_size": True},
        weight_files=("pytorch_model.bin", "model.safetensors")),
    PathologyEncoderSpec(
        "phikon-v2", "owkin/phikon-v2", "transformers", 1024,
        weight_files=("model.safetensors",)),
    PathologyEncoderSpec(
        "prov-gigapath", "prov-gigapath/prov-gigapath", "timm", 1536,
        architecture="vit_giant_patch14_dinov2",
        timm_kwargs={"img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536,
                     "depth": 40, "num_heads": 24, "init_values": 1e-5, "mlp_ratio": 5.33334,
                     "num_classes": 0, "dynamic_img_size": True}),
]}


def pathology_encoders():
    """The table of known pathology encoders as a DataFrame indexed by lnmkit name.

    Returns
    -------
    pandas.DataFrame
        Columns repo_id, backend, dim, input_size, mean, std, mpp, output,
        architecture, timm_kwargs, prefix_tokens, weight_files.
    """
    import pandas as pd

    rows = [asdict(spec) for spec in PATHOLOGY_ENCODERS.values()]
    return pd.DataFrame(rows).set_index("key")


def import_timm(name):
    """Import timm or raise an ImportError that says how to install it.

    Parameters
    ----------
    name : str
        Encoder being built, named in the message.

    Returns
    -------
    module
    """
    try:
        import timm
    except Exception as exc:  # timm raises RuntimeError when torchvision does not match torch
        raise ImportError(
            f"{name}: needs the optional package 'timm', which could not be imported "
            f"({type(exc).__name__}: {exc}). Install it with `{_TIMM_PIP}`; timm also needs a "
            "torchvision built for the same torch version.") from exc
    return timm


def _resolve_timm_kwargs(kwargs):
    import torch

    timm = import_timm("timm")
    objects = {"SwiGLUPacked": timm.layers.SwiGLUPacked, "SiLU": torch.nn.SiLU}
    return {k: objects.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}


class TimmEncoder(TorchTileEncoder):
    """Any timm architecture with weights from a local file (``"timm:<model_name>"``).

    Parameters
    ----------
    model_name : str
        timm model name, e.g. ``"vit_large_patch16_224"``.
    weights : str or path-like, optional
        Local state dict (``.safetensors`` or ``.pth``/``.bin``). Required unless
        ``pretrained=False``.
    pretrained : bool, default=True
        ``False`` keeps timm's random initialisation (testing only).
    timm_kwargs : dict, optional
        Passed to ``timm.create_model`` (``num_classes=0`` is added if absent).
    input_size : int, default=224
    mean, std : tuple of float, default=ImageNet
    mpp : float, default=0.5
    output : {"cls", "cls+mean"}, default="cls"
        See :class:`PathologyEncoderSpec`.
    prefix_tokens : int, default=1
    device, precision, batch_size
        See :class:`TorchTileEncoder`.
    name : str, optional
        Registry name written into bags; defaults to ``"timm:<model_name>"``.
    """

    version = "1"

    def __init__(self, model_name, weights=None, *, pretrained=True, timm_kwargs=None,
                 input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, mpp=0.5, output="cls",
                 prefix_tokens=1, device="cpu", precision="fp32", batch_size=64, name=None,
                 weights_path=None):
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        self.model_name = model_name
        self.weights = weights
        self.pretrained = pretrained
        self.timm_kwargs = dict(timm_kwargs or {})
        self.input_size = int(input_size)
        self.mean, self.std, self.mpp = tuple(mean), tuple(std), mpp
        self.output = output
        self.prefix_tokens = prefix_tokens
        self.name = name or f"timm:{model_name}"
        if output not in ("cls", "cls+mean"):
            raise ValueError(f"{self.name}: output must be 'cls' or 'cls+mean'; got {output!r}.")
        if pretrained and weights_path is None:
            weights_path = find_weights(
                self.name, weights,
                filenames=(f"{model_name}.safetensors", f"{model_name}.pth",
                           f"{model_name}/model.safetensors", f"{model_name}/pytorch_model.bin",
                           "model.safetensors", "pytorch_model.bin"),
                hf_repo=f"timm/{model_name}", hf_filenames=("model.safetensors", "pytorch_model.bin"))
        timm = import_timm(self.name)
        kwargs = _resolve_timm_kwargs({"num_classes": 0, **self.timm_kwargs})
        self.module = timm.create_model(model_name, pretrained=False, **kwargs)
        if pretrained:
            match_state_dict(self.module, load_state_dict(weights_path), path=weights_path,
                             expected=f"Expected a checkpoint of timm '{model_name}' with "
                                      f"{self.timm_kwargs}.")
        self.weights_path_ = weights_path if pretrained else None
        width = int(self.module.num_features)
        self.dim = 2 * width if output == "cls+mean" else width

    def _forward(self, x):
        import torch

        out = self.module(x)
        if self.output == "cls":
            return out if out.ndim == 2 else out[:, 0]               # (B, C)
        return torch.cat([out[:, 0], out[:, self.prefix_tokens:].mean(1)], dim=-1)  # (B, 2C)

    def config(self) -> dict:
        from lnmkit.features._hashing import file_fingerprint

        weights = file_fingerprint(self.weights_path_) if self.weights_path_ else "random-init"
        return {**super().config(), "weights": weights, "input_size": self.input_size,
                "mean": list(self.mean), "std": list(self.std), "output": self.output,
                "timm_kwargs": {k: str(v) for k, v in sorted(self.timm_kwargs.items())}}


@register_prefix("timm")
def _timm_factory(model_name, **kwargs):
    return TimmEncoder(model_name, **kwargs)
