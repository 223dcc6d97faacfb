"""Tile encoder base class and the registry behind :func:`get_encoder`."""

from __future__ import annotations

import abc
from typing import Callable

import numpy as np

__all__ = ["TileEncoder", "register_encoder", "register_prefix", "get_encoder", "list_encoders",
           "check_tiles"]

_ENCODERS: dict[str, Callable[..., "TileEncoder"]] = {}
_PREFIXES: dict[str, Callable[..., "TileEncoder"]] = {}


class TileEncoder(abc.ABC):
    """Turn a batch of RGB tiles into one feature vector per tile.

    Subclasses set the class or instance attributes below and implement
    :meth:`_encode`; :meth:`encode` checks the input once for every encoder.

    Attributes
    ----------
    name : str
        Registry name, written into feature bags.
    version : str
        Version of the encoder's definition or weights; a change invalidates bags.
    dim : int
        Length of each feature vector.
    input_size : int
        Tile side length in pixels the encoder was designed for, and the tile
        size :func:`~lnmkit.features.extract` lays out unless given one.
    mpp : float
        Recommended microns per pixel of the tiles (0.5 = 20x).
    """

    name: str = ""
    version: str = "1"
    dim: int = 0
    input_size: int = 224
    mpp: float = 0.5

    @property
    def feature_names(self) -> list[str]:
        """list of str: one name per output column (``"<name>_<i>"`` unless overridden)."""
        return [f"{self.name}_{i}" for i in range(self.dim)]

    def config(self) -> dict:
        """Everything that determines the encoder's output, for parameter hashing.

        Returns
        -------
        dict
            JSON-serialisable description (name, version, dim and encoder-specific
            settings such as the weights file).
        """
        return {"name": self.name, "version": self.version, "dim": int(self.dim)}

    def encode(self, tiles) -> np.ndarray:
        """Encode a batch of tiles.

        Parameters
        ----------
        tiles : ndarray of shape (B, H, W, 3), dtype uint8
            RGB tiles.

        Returns
        -------
        ndarray of shape (B, dim), dtype float32
        """
        tiles = check_tiles(tiles, where=f"{type(self).__name__}.encode")
        if tiles.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self._encode(tiles), dtype=np.float32)
        if out.shape != (tiles.shape[0], self.dim):
            raise RuntimeError(f"{self.name}: produced features of shape {out.shape}; expected "
                               f"({tiles.shape[0]}, {self.dim}).")
        return out

    @abc.abstractmethod
    def _encode(self, tiles: np.ndarray) -> np.ndarray:
        """Encode validated uint8 tiles of shape (B, H, W, 3), B >= 1."""

    def __repr__(self):
        return (f"<{type(self).__name__} {self.name!r} v{self.version}: dim={self.dim}, "
                f"input {self.input_size} px at {self.mpp} mpp>")


def check_tiles(tiles, *, where="encode"):
    """Check that ``tiles`` is a uint8 array of shape (B, H, W, 3).

    Parameters
    ----------
    tiles : array-like
        Candidate tile batch.
    where : str, default="encode"
        Caller named in error messages.

    Returns
    -------
    ndarray
        ``tiles`` as a C-contiguous ndarray.

    Raises
    ------
    TypeError
        If the dtype is not uint8.
    ValueError
        If the shape is not (B, H, W, 3).
    """
    tiles = np.ascontiguousarray(tiles)
    if tiles.dtype != np.uint8:
        raise TypeError(f"{where}: tiles must be uint8 RGB; got dtype {tiles.dtype} instead. "
                        "Convert with np.clip(x, 0, 255).astype(np.uint8).")
    if tiles.ndim != 4 or tiles.shape[3] != 3:
        raise ValueError(f"{where}: tiles must have shape (B, H, W, 3); got {tiles.shape} instead. "
                         "Add a batch axis with tiles[None] for a single tile.")
    return tiles


def register_encoder(name: str):
    """Class or factory decorator adding an encoder to the registry under ``name``.

    Parameters
    ----------
    name : str
        Registry key used by :func:`get_encoder`.

    Returns
    -------
    callable
        The decorator; it returns the decorated object unchanged.
    """

    def decorate(factory):
        _ENCODERS[name] = factory
        return factory

    return decorate


def register_prefix(prefix: str):
    """Decorator registering a factory for names ``"<prefix>:<rest>"``.

    Parameters
    ----------
    prefix : str
        For example ``"timm"``; the factory is called with ``rest`` first.

    Returns
    -------
    callable
        The decorator.
    """

    def decorate(factory):
        _PREFIXES[prefix] = factory
        return factory

    return decorate


def _load_builtin_encoders():
    # Importing the subpackage runs the @register_encoder decorators; deferred so that
    # importing the registry never imports torch.
    import lnmkit.features.encoders  # noqa: F401


def list_encoders() -> list[str]:
    """Names accepted by :func:`get_encoder`, sorted.

    Besides these, ``"timm:<model_name>"`` and ``"hf-hub:<repo_id>"`` are accepted.

    Returns
    -------
    list of str
    """
    _load_builtin_encoders()
    return sorted(_ENCODERS)


def _check_kwargs(name, factory, kwargs, skip=0):
    """Name the encoder and its valid parameters when a keyword is unknown (not Python's bare TypeError)."""
    import inspect

    params = list(inspect.signature(factory).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"get_encoder: encoder {name!r} has no parameter(s) {unknown}; its parameters are "
                        f"{sorted(valid)}.")


def get_encoder(name, **kwargs) -> TileEncoder:
    """Build a tile encoder by name.

    Parameters
    ----------
    name : str or TileEncoder
        A name from :func:`list_encoders`, ``"timm:<model_name>"`` or
        ``"hf-hub:<repo_id>"``; an encoder instance is returned as it is.
    **kwargs
        Passed to the encoder's constructor (for example ``weights=``, ``device=``,
        ``precision=``, ``batch_size=``).

    Returns
    -------
    TileEncoder

    Raises
    ------
    ValueError
        If ``name`` is not a known encoder; the message lists the valid names.

    Examples
    --------
    >>> from lnmkit.features import get_encoder
    >>> enc = get_encoder("stain-texture")
    >>> enc.dim
    82
    """
    if isinstance(name, TileEncoder):
        if kwargs:
            raise TypeError("get_encoder: keyword arguments cannot be applied to an encoder instance; "
                            f"got {sorted(kwargs)}.")
        return name
    if not isinstance(name, str):
        raise TypeError(f"get_encoder: name must be a string; got {type(name).__name__} instead.")
    _load_builtin_encoders()
    if name in _ENCODERS:
        _check_kwargs(name, _ENCODERS[name], kwargs)
        return _ENCODERS[name](**kwargs)
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _PREFIXES and rest:
        _check_kwargs(name, _PREFIXES[prefix], kwargs, skip=1)
        return _PREFIXES[prefix](rest, **kwargs)
    valid = ", ".join(repr(n) for n in sorted(_ENCODERS))
    prefixes = ", ".join(f"'{p}:<name>'" for p in sorted(_PREFIXES))
    raise ValueError(f"get_encoder: unknown encoder {name!r}. Valid names: {valid}; or one of the "
                     f"forms {prefixes}.")
