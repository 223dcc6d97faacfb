"""Patient bags, padded collation and a length-bucketed batch sampler.

A patient with several slides is one bag: the tiles of all the patient's slides
concatenated in slide order, so attention is normalised over the whole patient.
Each tile remembers its slide (``slide_index``) and level-0 coordinates, which
is how per-tile attention is mapped back onto the right slide.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from lnmkit.exceptions import MILInputError, MILInputWarning

__all__ = ["PatientBag", "as_patient_bags", "collate_bags", "length_bucketed_batches", "load_bags"]


@dataclass
class PatientBag:
    """All tiles of one patient.

    Attributes
    ----------
    patient_id : str
    features : ndarray of shape (n_tiles, n_features), float32
    coords : ndarray of shape (n_tiles, 2), int64
        Level-0 top-left ``(x, y)`` of each tile; ``-1`` when unknown.
    slide_index : ndarray of shape (n_tiles,), int64
        Position in ``slide_ids`` of each tile's slide.
    slide_ids : tuple of str
    slide_attrs : tuple of dict
        Per-slide attributes of the feature files (``tile_size_level0``, ``mpp``, ...).
    """

    patient_id: str
    features: np.ndarray
    coords: np.ndarray
    slide_index: np.ndarray
    slide_ids: tuple = ()
    slide_attrs: tuple = field(default_factory=tuple)

    def __post_init__(self):
        self.patient_id = str(self.patient_id)
        self.features = np.asarray(self.features, dtype=np.float32)
        self.coords = np.asarray(self.coords, dtype=np.int64).reshape(-1, 2)
        self.slide_index = np.asarray(self.slide_index, dtype=np.int64).reshape(-1)
        self.slide_ids = tuple(str(s) for s in self.slide_ids)
        self.slide_attrs = tuple(dict(a) for a in self.slide_attrs)
        n = self.features.shape[0] if self.features.ndim == 2 else -1
        if self.features.ndim != 2:
            raise MILInputError(
                f"PatientBag {self.patient_id!r}: features must be 2-D (n_tiles, n_features); "
                f"got shape {self.features.shape}."
            )
        if self.coords.shape[0] != n or self.slide_index.shape[0] != n:
            raise MILInputError(
                f"PatientBag {self.patient_id!r}: features has {n} rows but coords has "
                f"{self.coords.shape[0]} and slide_index {self.slide_index.shape[0]}."
            )

    @classmethod
    def from_array(cls, patient_id, features):
        """Bag without coordinates: one pseudo-slide named after the patient."""
        features = np.asarray(features, dtype=np.float32)
        n = features.shape[0] if features.ndim == 2 else 0
        return cls(patient_id, features, np.full((n, 2), -1), np.zeros(n), (str(patient_id),), ({},))

    @property
    def n_tiles(self):
        """Number of tiles."""
        return int(self.features.shape[0])

    def tile_table(self):
        """Tile index as a DataFrame: patient_id, slide_id, x, y (one row per tile)."""
        sid = np.asarray(self.slide_ids, dtype=object)[self.slide_index] if self.n_tiles else []
        return pd.DataFrame(
            {
                "patient_id": self.patient_id,
                "slide_id": sid,
                "x": self.coords[:, 0],
                "y": self.coords[:, 1],
            }
        )


def as_patient_bags(bags, index=None, where="bags"):
    """Normalise user input to an ordered dict ``patient_id -> PatientBag``.

    Parameters
    ----------
    bags : dict or list
        dict ``patient_id -> (n_tiles, n_features) array | PatientBag | FeatureBag``,
        or a list aligned with ``index``.
    index : sequence of str, optional
        Patient ids for a list input.
    where : str
        Caller name for error messages.

    Returns
    -------
    dict of str to PatientBag

    Raises
    ------
    TypeError, ValueError
        On an unsupported container, a length mismatch, an empty bag, a bag of the
        wrong dimension or non-finite features.
    """
    if isinstance(bags, dict):
        items = list(bags.items())
    elif isinstance(bags, (list, tuple)):
        if index is None:
            raise TypeError(
                f"{where}: a list of bags needs patient ids; pass a dict patient_id -> bag, "
                "or a y DataFrame indexed by patient_id in the same order."
            )
        if len(index) != len(bags):
            raise MILInputError(f"{where}: got {len(bags)} bags but {len(index)} patient ids.")
        items = list(zip(index, bags))
    else:
        raise TypeError(
            f"{where}: expected a dict patient_id -> (n_tiles, n_features) array or a list; "
            f"got {type(bags).__name__}."
        )
    out = {}
    dim = None
    for pid, bag in items:
        pid = str(pid)
        if isinstance(bag, PatientBag):
            pb = bag
        elif hasattr(bag, "features") and hasattr(bag, "coords"):
            attrs = dict(getattr(bag, "attrs", {}) or {})
            sid = str(attrs.get("slide_id", pid))
            n = len(bag.features)
            pb = PatientBag(pid, bag.features, bag.coords, np.zeros(n), (sid,), (attrs,))
        else:
            pb = PatientBag.from_array(pid, bag)
        if pb.n_tiles == 0:
            raise MILInputError(f"{where}: patient {pid!r} has an empty bag (0 tiles); drop it.")
        if dim is None:
            dim = pb.features.shape[1]
        elif pb.features.shape[1] != dim:
            raise MILInputError(
                f"{where}: patient {pid!r} has {pb.features.shape[1]} features per tile; "
                f"other bags have {dim}. All bags must come from the same encoder."
            )
        if not np.isfinite(pb.features).all():
            raise MILInputError(
                f"{where}: patient {pid!r} has non-finite (NaN/inf) tile features; "
                "re-extract the slide's features."
            )
        if pid in out:
            raise MILInputError(f"{where}: patient {pid!r} appears twice; merge its slides into one bag.")
        out[pid] = pb
    return out


def collate_bags(arrays, dtype=torch.float32):
    """Pad a list of (N_i, D) arrays into ``x`` (B, N_max, D) and ``mask`` (B, N_max).

    Parameters
    ----------
    arrays : list of ndarray
    dtype : torch.dtype, default=torch.float32

    Returns
    -------
    x : torch.Tensor of shape (B, N_max, D)
        Zeros on padded rows.
    mask : torch.BoolTensor of shape (B, N_max)
        True on real tiles.
    """
    n_max = max(a.shape[0] for a in arrays)
    dim = arrays[0].shape[1]
    x = np.zeros((len(arrays), n_max, dim), dtype=np.float32)
    mask = np.zeros((len(arrays), n_max), dtype=bool)
    for i, a in enumerate(arrays):
        x[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return torch.from_numpy(x).to(dtype), torch.from_numpy(mask)


def length_bucketed_batches(lengths, batch_size, rng, jitter=0.25):
    """Batches of similar-length bags, in random order.

    Bags are sorted by ``log(length) + U(-jitter, jitter)`` so that batches mix
    bags within roughly +-``jitter`` in relative length (limiting padding)
    while their composition still changes from epoch to epoch. A trailing
    batch of one bag is merged into the previous batch, so no batch has a
    single bag unless there is only one bag.

    Parameters
    ----------
    lengths : array-like of int
    batch_size : int
    rng : numpy.random.Generator
    jitter : float, default=0.25

    Returns
    -------
    list of ndarray of int
    """
    lengths = np.asarray(lengths, dtype=float)
    n = len(lengths)
    key = np.log(np.maximum(lengths, 1.0)) + rng.uniform(-jitter, jitter, size=n)
    order = np.argsort(key, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = np.concatenate([batches[-2], batches[-1]])
        batches.pop()
    return [batches[i] for i in rng.permutation(len(batches))]


def load_bags(feature_set, cohort=None, patients=None, progress=True):
    """Read every patient's slides into one :class:`PatientBag` per patient.

    Parameters
    ----------
    feature_set : lnmkit.features.FeatureSet
        As returned by ``lnmkit.features.open_features``; slides with status ok are used.
    cohort : lnmkit.Cohort, optional
        Maps slides to patients (``cohort.slides.patient_id``). When its slide
        table has rows it is authoritative: feature files of slides it does not
        list (excluded, or left from an earlier extraction) are skipped, and a
        file whose ``patient_id`` disagrees is assigned to the cohort's patient;
        both are reported in one :class:`~lnmkit.exceptions.MILInputWarning`.
        Without it (or with an empty slide table) the ``patient_id`` of the
        manifest or of the feature files is used.
    patients : sequence of str, optional
        Keep only these patients.
    progress : bool, default=True

    Returns
    -------
    dict of str to PatientBag
        Slides of a patient concatenated in ``slide_id`` order.
    """
    from tqdm.auto import tqdm

    slide_ids = list(feature_set.slide_ids)
    owner = {}
    authoritative = cohort is not None and len(cohort.slides) > 0
    if cohort is not None:
        owner = cohort.slides["patient_id"].astype(str).to_dict()
    elif "patient_id" in getattr(feature_set, "manifest", pd.DataFrame()).columns:
        owner = feature_set.manifest["patient_id"].astype(str).to_dict()
    keep = None if patients is None else {str(p) for p in patients}
    unlisted = [sid for sid in slide_ids if authoritative and sid not in owner]
    slide_ids = [sid for sid in slide_ids if sid not in unlisted]
    moved = []
    per_patient = {}
    for sid in tqdm(sorted(slide_ids), desc="reading bags", disable=not progress):
        bag = feature_set.bag(sid)
        recorded = str(bag.attrs.get("patient_id", "") or "")
        pid = owner.get(sid) or recorded or None
        if authoritative and recorded and recorded != pid:
            moved.append(f"{sid} ({recorded} in its feature file, {pid} in the cohort)")
        if pid is None:
            raise MILInputError(
                f"load_bags: slide {sid!r} has no patient_id in the cohort, the manifest or its "
                "feature file; pass cohort= so slides can be mapped to patients."
            )
        if keep is not None and pid not in keep:
            continue
        if len(bag.features) == 0:
            continue
        per_patient.setdefault(pid, []).append((sid, bag))
    _warn_mapping(unlisted, moved)
    out = {}
    for pid in sorted(per_patient):
        parts = per_patient[pid]
        feats = np.concatenate([np.asarray(b.features, np.float32) for _, b in parts])
        coords = np.concatenate([np.asarray(b.coords, np.int64).reshape(-1, 2) for _, b in parts])
        sidx = np.concatenate([np.full(len(b.features), i) for i, (_, b) in enumerate(parts)])
        attrs = tuple(dict(getattr(b, "attrs", {}) or {}) for _, b in parts)
        out[pid] = PatientBag(pid, feats, coords, sidx, tuple(s for s, _ in parts), attrs)
    return out


def _warn_mapping(unlisted, moved):
    """One warning for feature files the cohort does not list or maps to another patient."""
    parts = []
    if unlisted:
        parts.append(f"skipped {len(unlisted)} feature file(s) of slides not in the cohort's slides.csv: "
                     + ", ".join(sorted(unlisted)[:10]) + (" ..." if len(unlisted) > 10 else ""))
    if moved:
        parts.append(f"{len(moved)} slide(s) assigned to the cohort's patient, not their feature file's: "
                     + "; ".join(sorted(moved)[:10]) + (" ..." if len(moved) > 10 else ""))
    if parts:
        warnings.warn(MILInputWarning("load_bags: " + "; ".join(parts)), stacklevel=3)
