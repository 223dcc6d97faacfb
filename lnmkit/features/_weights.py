"""Find and load encoder weights from local files only (never downloads).

Search order for an encoder's weights: the ``weights=`` argument (a file, or a
folder holding one of the expected file names), then ``$LNMKIT_WEIGHTS_DIR``,
then the user's Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
``~/.cache/huggingface/hub``). Files are read with ``safetensors`` or
``torch.load(weights_only=True)``; nothing is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

from lnmkit.exceptions import IncompatibleWeightsError, MissingWeightsError

__all__ = ["WEIGHTS_ENV", "hf_cache_dir", "hf_cached_file", "find_weights", "load_state_dict",
           "match_state_dict"]

WEIGHTS_ENV = "LNMKIT_WEIGHTS_DIR"
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder that ``huggingface_hub`` would use.

    Returns
    -------
    pathlib.Path
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _hf_repo_folder(repo_id):
    return hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def hf_cached_file(repo_id, filename):
    """Path of ``filename`` of ``repo_id`` in the local Hugging Face cache, or None.

    Uses ``huggingface_hub.try_to_load_from_cache`` when installed; when that finds
    nothing (or it is not installed) reads the cache layout itself
    (``models--org--name/refs/main`` -> ``snapshots/<rev>``, else any snapshot holding
    the file); never touches the network.

    Parameters
    ----------
    repo_id : str
        For example ``"MahmoodLab/UNI"``.
    filename : str
        For example ``"pytorch_model.bin"``.

    Returns
    -------
    pathlib.Path or None
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        try_to_load_from_cache = None
    if try_to_load_from_cache is not None:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_cache_dir()))
        if isinstance(found, str):
            return Path(found)
    # huggingface_hub only follows refs/main; a snapshot copied without its refs folder
    # must be found the same way whether or not huggingface_hub is installed.
    folder = _hf_repo_folder(repo_id)
    ref = folder / "refs" / "main"
    candidates = []
    if ref.is_file():
        candidates.append(folder / "snapshots" / ref.read_text().strip() / filename)
    candidates += sorted((folder / "snapshots").glob(f"*/{filename}"))
    for path in candidates:
        if path.is_file():
            return path
    return None


def find_weights(encoder_name, weights, *, filenames, hf_repo=None, hf_filenames=(), hint=""):
    """Locate a local weights file.

    Parameters
    ----------
    encoder_name : str
        Named in error messages.
    weights : str, path-like or None
        Explicit file, or folder searched for ``filenames``.
    filenames : sequence of str
        File names looked for in a ``weights`` folder and in ``$LNMKIT_WEIGHTS_DIR``.
    hf_repo : str, optional
        Hugging Face repo id whose cached snapshot is searched for ``hf_filenames``.
    hf_filenames : sequence of str, default=()
        File names inside the Hugging Face repo.
    hint : str, default=""
        Where such weights come from, appended to the error message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    MissingWeightsError
        If nothing is found; the message lists every place searched.
    """
    searched = []
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            for name in filenames:
                if (path / name).is_file():
                    return path / name
            searched.append(f"{path}/{{{', '.join(filenames)}}}")
        else:
            raise MissingWeightsError(f"{encoder_name}: weights file {str(path)!r} does not exist. "
                                      f"Pass the path of an existing file. {hint}".strip())
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        for name in filenames:
            if (Path(env) / name).is_file():
                return Path(env) / name
        searched.append(f"${WEIGHTS_ENV}={env}/{{{', '.join(filenames)}}}")
    else:
        searched.append(f"${WEIGHTS_ENV} (not set)")
    if hf_repo:
        for name in hf_filenames:
            found = hf_cached_file(hf_repo, name)
            if found is not None:
                return found
        searched.append(f"Hugging Face cache {_hf_repo_folder(hf_repo)}/snapshots/<revision>/"
                        f"{{{', '.join(hf_filenames)}}}")
    where = "; ".join(searched)
    put = (f"put one of {list(filenames)} into a folder and set {WEIGHTS_ENV} to it, pass "
           f"weights='/path/to/file'")
    if hf_repo:
        put += (f", or on a machine with internet run `huggingface-cli download {hf_repo}` and copy "
                f"{_hf_repo_folder(hf_repo)} here")
    raise MissingWeightsError(f"{encoder_name}: no weights found locally (searched: {where}). To "
                              f"fix: {put}. {hint}".strip())


def load_state_dict(path):
    """Read a state dict from ``.safetensors`` or a torch file, without unpickling.

    Checkpoints wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` are
    unwrapped and a ``module.`` prefix (DataParallel) is removed.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    IncompatibleWeightsError
        If the file cannot be read as a state dict.
    """
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise IncompatibleWeightsError(
            f"{path}: cannot be read as a weights file ({type(exc).__name__}: {exc}). lnmkit reads "
            ".safetensors, or .pth/.pt/.bin files that torch.load(weights_only=True) accepts.") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and set(state) == {key} and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise IncompatibleWeightsError(f"{path}: does not hold a state dict of tensors.")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def match_state_dict(module, state, *, path, ignore_prefixes=(), optional_suffixes=(), expected=""):
    """Load ``state`` into ``module`` with strict name and shape checks.

    Parameters
    ----------
    module : torch.nn.Module
    state : dict of str to torch.Tensor
    path : str or path-like
        The weights file, named in errors.
    ignore_prefixes : sequence of str, default=()
        Keys in ``state`` starting with these are dropped first (for example the
        ``layer4.`` and ``fc.`` of a full ResNet loaded into a truncated one).
    optional_suffixes : sequence of str, default=()
        Module keys that may be missing from ``state`` (``num_batches_tracked``).
    expected : str, default=""
        Which checkpoint fits, appended to error messages.

    Raises
    ------
    IncompatibleWeightsError
        On missing or unexpected keys or mismatched shapes; the message lists them.
    """
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(tuple(optional_suffixes))]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", shapes)):
            if items:
                shown = ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise IncompatibleWeightsError(f"{path}: weights do not fit {type(module).__name__} ("
                                       + "; ".join(parts) + f"). {expected}".rstrip())
    module.load_state_dict(state, strict=False)
