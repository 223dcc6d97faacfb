"""Shared inference loop of the PyTorch tile encoders."""

from __future__ import annotations

import contextlib
from typing import Literal

import numpy as np

from lnmkit.features._registry import TileEncoder

__all__ = ["TorchTileEncoder", "IMAGENET_MEAN", "IMAGENET_STD", "resolve_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PRECISIONS = ("fp32", "fp16", "bf16")


def resolve_device(device):
    """Return a ``torch.device``; ``"auto"`` picks CUDA when available.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` ...

    Returns
    -------
    torch.device
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TorchTileEncoder(TileEncoder):
    """Batched, no-grad inference of a ``torch.nn.Module`` on uint8 tiles.

    Tiles are scaled to [0, 1], resized (bilinear, antialiased) to
    :attr:`input_size` when their size differs, normalised with :attr:`mean` and
    :attr:`std`, converted to channels-last and run under
    ``torch.inference_mode`` with optional autocast.

    Subclasses build ``self.module`` in ``__init__`` and may override
    :meth:`_forward` to post-process the module output.

    Parameters
    ----------
    device : str, default="cpu"
        Torch device; ``"auto"`` uses CUDA when available.
    precision : {"fp32", "fp16", "bf16"}, default="fp32"
        Autocast precision. ``fp16`` needs a CUDA device; ``bf16`` runs on CUDA and
        on recent CPUs.
    batch_size : int, default=64
        Tiles per forward pass.
    """

    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __init__(self, *, device="cpu", precision: Literal["fp32", "fp16", "bf16"] = "fp32",
                 batch_size=64):
        self.device = device
        self.precision = precision
        self.batch_size = batch_size

    def _check_runtime(self):
        if self.precision not in _PRECISIONS:
            raise ValueError(f"{self.name}: precision must be one of {_PRECISIONS}; got "
                             f"{self.precision!r} instead.")
        device = resolve_device(self.device)
        if self.precision == "fp16" and device.type != "cuda":
            raise ValueError(f"{self.name}: precision='fp16' needs a CUDA device; got device "
                             f"{str(device)!r}. Use precision='bf16' or 'fp32' on CPU.")
        if not (isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1):
            raise ValueError(f"{self.name}: batch_size must be a positive integer; got "
                             f"{self.batch_size!r} instead.")
        return device

    def _prepare_module(self, device):
        import torch

        if getattr(self, "_module_device", None) != device:
            self.module = self.module.to(device=device, memory_format=torch.channels_last).eval()
            self._module_device = device
            self._mean_t = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
            self._std_t = torch.tensor(self.std, device=device).view(1, 3, 1, 1)

    def _autocast(self, device):
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _forward(self, x):
        """Run the module on a normalised (B, 3, S, S) batch; returns (B, dim)."""
        return self.module(x)

    def _encode(self, tiles):
        import torch
        import torch.nn.functional as F

        device = self._check_runtime()
        self._prepare_module(device)
        out = np.empty((len(tiles), self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast(device):
            for start in range(0, len(tiles), int(self.batch_size)):
                chunk = torch.from_numpy(tiles[start:start + int(self.batch_size)]).to(device)
                x = chunk.permute(0, 3, 1, 2).float().div_(255.0)          # (B, 3, H, W)
                if x.shape[-2:] != (self.input_size, self.input_size):
                    x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                      align_corners=False, antialias=True)  # (B, 3, S, S)
                x = ((x - self._mean_t) / self._std_t).contiguous(memory_format=torch.channels_last)
                y = self._forward(x)                                         # (B, dim)
                out[start:start + len(chunk)] = y.float().cpu().numpy()
        return out
