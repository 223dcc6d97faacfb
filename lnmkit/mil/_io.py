"""Saving and loading MIL models as safetensors + JSON (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from lnmkit._io import atomic_path, atomic_write_text
from lnmkit._version import __version__

__all__ = ["save_classifier", "load_classifier"]

FORMAT = "lnmkit.mil.MILClassifier"
FORMAT_VERSION = 2
# Parameters that did not exist when a format version was current, with the value
# that reproduces the models of that version.
_DEFAULTS_BEFORE = {2: {"shared_attention": True, "slide_normalisation": None}}
_JSON_PARAMS = (str, int, float, bool, type(None))


def _jsonable_params(params):
    out = {}
    for k, v in params.items():
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, list) and all(isinstance(i, _JSON_PARAMS) for i in v) or isinstance(v, _JSON_PARAMS):
            out[k] = v
        else:
            raise TypeError(f"save: parameter {k}={v!r} cannot be stored as JSON.")
    return out


def save_classifier(clf, path):
    """Write a fitted classifier to folder ``path``.

    Files: ``model.safetensors`` (network weights plus ``scaler.mean`` and
    ``scaler.std``) and ``config.json`` (parameters, tasks, input dimension,
    training history, the losses of the ``n_init`` networks tried, lnmkit version).

    Parameters
    ----------
    clf : MILClassifier
    path : str or path-like

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in clf.model_.state_dict().items()}
    tensors["scaler.mean"] = torch.from_numpy(np.ascontiguousarray(clf.feature_mean_))
    tensors["scaler.std"] = torch.from_numpy(np.ascontiguousarray(clf.feature_std_))
    with atomic_path(path / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lnmkit_version": __version__,
        "params": _jsonable_params(clf.get_params()),
        "tasks": list(clf.tasks_),
        "n_features_in": int(clf.n_features_in_),
        "best_epoch": int(clf.best_epoch_),
        "init_losses": [float(v) for v in clf.init_losses_],
        "train_patients": list(clf.train_patients_),
        "val_patients": list(clf.val_patients_),
        "history": clf.history_.reset_index().to_dict(orient="list"),
    }
    atomic_write_text(path / "config.json", json.dumps(config, indent=2))
    return path


def load_classifier(cls, path):
    """Rebuild a classifier saved by :func:`save_classifier`.

    Parameters
    ----------
    cls : type
        ``MILClassifier`` (or a subclass).
    path : str or path-like

    Returns
    -------
    MILClassifier
    """
    path = Path(path)
    cfg_path, weights_path = path / "config.json", path / "model.safetensors"
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{cls.__name__}.load: {p} not found; point to a folder written by save().")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise ValueError(
            f"{cls.__name__}.load: {cfg_path} has format {config.get('format')!r}; expected {FORMAT!r}."
        )
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{cls.__name__}.load: {cfg_path} has format_version {config['format_version']}; this "
            f"lnmkit ({__version__}) reads up to {FORMAT_VERSION}. Upgrade lnmkit."
        )
    params = dict(config["params"])
    for version, defaults in _DEFAULTS_BEFORE.items():
        if int(config.get("format_version", 0)) < version:
            for key, value in defaults.items():
                params.setdefault(key, value)
    if isinstance(params.get("tasks"), list):
        params["tasks"] = tuple(params["tasks"])
    clf = cls(**params)
    clf.tasks_ = tuple(config["tasks"])
    clf.n_features_in_ = int(config["n_features_in"])
    tensors = load_file(str(weights_path))
    model = clf._build(clf.n_features_in_, clf.tasks_)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    clf.model_ = model
    clf.feature_mean_ = tensors["scaler.mean"].numpy().copy()
    clf.feature_std_ = tensors["scaler.std"].numpy().copy()
    clf.best_epoch_ = int(config["best_epoch"])
    clf.init_losses_ = np.asarray(config.get("init_losses", []), dtype=float)  # absent before lnmkit 0.3
    clf.train_patients_ = list(config["train_patients"])
    clf.val_patients_ = list(config["val_patients"])
    clf.history_ = pd.DataFrame(config["history"]).set_index("epoch")
    return clf
