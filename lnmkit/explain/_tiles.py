"""The slide score's SHAP value spread over the patient's tiles.

The fused model sees one number per patient from the slides, the MIL score ``s``.
For attention MIL the score's logit decomposes exactly over tiles:
``logit(s) = b + sum_i c_i`` with ``c_i`` the tile's ``contribution_<task>``
(``CrossFitResult.attention``) and ``b`` the head's bias. The fused model's SHAP
value ``phi`` of that score is a statement relative to a reference score
``s_ref`` (the background mean, which SHAP's base value also uses). With
``l = logit(s)``, ``l_ref = logit(s_ref)`` and ``delta = l - l_ref`` (the score is
a probability: for a log-hazard score, ``l = s``), each tile is measured against
a reference tile that carries an equal part of ``l_ref - b``:

    w_i = (c_i - (l_ref - b) / n) / delta
        = 1 / n + (c_i - mean_j c_j) / delta,        share_i = phi * w_i.

``sum_i w_i = 1`` exactly, so the tile shares of one patient sum to ``phi``: the
monotone chain score -> logit -> tiles is attributed with the rescale rule
(as DeepLIFT does through a nonlinearity). A tile whose contribution is above the
patient's mean tile pushes the score, and hence ``phi``, in its direction. When
``|delta|`` is below ``tol`` (the patient's score is the reference) the shares
follow the attention weights instead, which also sum to one.
``method="proportional"`` uses ``w_i = c_i / sum_j c_j`` (no reference; unstable
when the contributions cancel, in which case attention is used as well).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lnmkit.exceptions import ExplainError

__all__ = ["TileShap", "tile_shap"]

_TASK_HINTS = (("otc", "otc"), ("risk", "survival"), ("surv", "survival"), ("lnm", "lnm"))


def _infer_task(feature, attention):
    for hint, task in _TASK_HINTS:
        if hint in feature.lower() and f"contribution_{task}" in attention.columns:
            return task
    tasks = [c[len("contribution_"):] for c in attention.columns if c.startswith("contribution_")]
    if len(tasks) == 1:
        return tasks[0]
    raise ExplainError(f"tile_shap: cannot tell which MIL task produced {feature!r}; pass task= one of {tasks}.")


def _logit(p):
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class TileShap:
    """Slide SHAP values spread over tiles.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per tile of an explained patient: ``patient_id``, ``slide_id``,
        ``x``, ``y``, ``attention``, ``contribution_<feature>``, ``share_<feature>``
        per slide feature and ``share`` (their sum): the tile's part of the
        patient's slide SHAP value, on the explanation's scale.
    patients : pandas.DataFrame
        Indexed by patient_id, per slide feature: ``shap_<feature>`` (the value
        spread), ``score_<feature>``, ``delta_<feature>`` (logit minus reference
        logit), ``method_<feature>`` (``rescale``, ``proportional`` or
        ``attention``), plus ``n_tiles`` and ``shap_slide`` (sum of the slide
        features' SHAP values = sum of ``share``).
    features : list of str
        The slide features spread.
    reference : dict
        Reference score per feature.
    scale : str
        Scale of the shares (the explanation's, e.g. ``"log-odds"``).
    unassigned : list of str
        Patients with a slide SHAP value but no tiles (e.g. no usable slide).
    """

    table: pd.DataFrame
    patients: pd.DataFrame
    features: list
    reference: dict
    scale: str
    unassigned: list = field(default_factory=list)

    def patient(self, patient_id):
        """Tiles of one patient, largest absolute share first (DataFrame)."""
        pid = str(patient_id)
        tiles = self.table[self.table["patient_id"] == pid]
        if tiles.empty:
            raise KeyError(f"TileShap: patient {pid!r} has no tiles here.")
        return tiles.reindex(tiles["share"].abs().sort_values(ascending=False).index)

    def top(self, patient_id, k=12):
        """The ``k`` tiles with the largest share in the direction of the patient's slide SHAP."""
        tiles = self.patient(patient_id)
        sign = 1.0 if self.patients.loc[str(patient_id), "shap_slide"] >= 0 else -1.0
        return tiles.reindex((sign * tiles["share"]).sort_values(ascending=False).index).head(int(k))

    def heatmap(self, patient_id, slide, slide_id=None, tile_size_level0=None, *, title=None, ax=None, **kw):
        """Tile shares over the slide thumbnail (wraps :func:`lnmkit.mil.attention_heatmap`).

        Only the slide's thumbnail is read (from the pyramid, never the label or
        macro image); coordinates and shares come from :attr:`table`.

        Parameters
        ----------
        patient_id : str
        slide : str, path-like or lnmkit.slides.Slide
        slide_id : str, optional
            Which of the patient's slides ``slide`` is (default: the only one).
        tile_size_level0 : float
            Tile side in level-0 pixels (the feature file's ``tile_size_level0``).
        title : str, optional
        ax : matplotlib.axes.Axes, optional
        **kw
            Passed to ``attention_heatmap`` (``thumbnail_size``, ``smooth_sigma``, ...).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from lnmkit.mil import attention_heatmap

        tiles = self._slide_tiles(patient_id, slide_id)
        if tile_size_level0 is None:
            raise ValueError("TileShap.heatmap: pass tile_size_level0 (the feature file's tile side in level-0 px).")
        lim = float(np.abs(tiles["share"]).max()) or 1.0
        kw.setdefault("cmap", "RdBu_r")
        kw.setdefault("vmin", -lim)
        kw.setdefault("vmax", lim)
        return attention_heatmap(slide, tiles[["x", "y"]].to_numpy(), tiles["share"].to_numpy(), tile_size_level0,
                                 label=f"tile share of slide SHAP ({self.scale})",
                                 title=title if title is not None else f"patient {patient_id}", ax=ax, **kw)

    def montage(self, patient_id, slide, slide_id=None, tile_size_level0=None, k=6, *, title=None, **kw):
        """Top and bottom ``k`` tiles by share (wraps :func:`lnmkit.mil.top_tiles`).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from lnmkit.mil import top_tiles

        tiles = self._slide_tiles(patient_id, slide_id)
        if tile_size_level0 is None:
            raise ValueError("TileShap.montage: pass tile_size_level0 (the feature file's tile side in level-0 px).")
        return top_tiles(slide, tiles[["x", "y"]].to_numpy(), tiles["share"].to_numpy(), tile_size_level0, k=k,
                         label="SHAP share", title=title if title is not None else f"patient {patient_id}: tiles by "
                         "share of slide SHAP", **kw)

    def _slide_tiles(self, patient_id, slide_id):
        tiles = self.table[self.table["patient_id"] == str(patient_id)]
        if tiles.empty:
            raise KeyError(f"TileShap: patient {patient_id!r} has no tiles here.")
        slides = tiles["slide_id"].unique().tolist()
        if slide_id is None:
            if len(slides) > 1:
                raise ValueError(f"TileShap: patient {patient_id!r} has {len(slides)} slides; pass slide_id=.")
            slide_id = slides[0]
        if str(slide_id) not in slides:
            raise KeyError(f"TileShap: slide {slide_id!r} is not one of patient {patient_id!r}'s slides.")
        return tiles[tiles["slide_id"] == str(slide_id)]

    def localisation(self, tile_labels, threshold=0.5, patients=None):
        """Tile-level AUC of the shares against tumour labels (planted truth or annotations).

        Each feature's shares are oriented by the sign of ``phi / delta`` (the
        direction in which the fused model turns a higher slide score), so tiles
        that raise the MIL score rank first whatever the patient's risk; the AUC
        then says whether the tiles behind the slide score are the tumour tiles.

        Parameters
        ----------
        tile_labels : dict of str to array-like
            ``slide_id -> tumour fraction per tile``, in the slide's tile order here.
        threshold : float, default=0.5
        patients : list of str, optional
            Restrict to these patients.

        Returns
        -------
        lnmkit.mil.LocalisationResult
        """
        from lnmkit.mil import attention_localisation_auc

        tab = self.table
        if patients is not None:
            tab = tab[tab["patient_id"].isin([str(p) for p in patients])]
        evidence = np.zeros(len(tab))
        for f in self.features:
            phi = self.patients[f"shap_{f}"].reindex(tab["patient_id"]).to_numpy(float)
            delta = self.patients[f"delta_{f}"].reindex(tab["patient_id"]).to_numpy(float)
            orient = np.sign(phi * np.where(np.isfinite(delta) & (delta != 0), delta, 1.0))
            orient[orient == 0] = 1.0
            evidence += orient * tab[f"share_{f}"].to_numpy(float)
        tab = tab.assign(evidence=evidence)
        return attention_localisation_auc(tab, tile_labels, score="evidence", threshold=threshold)

    def plot(self, ax=None, patient_id=None, k=12):
        """Shares of one patient's top tiles (or the cohort's cumulative share curve).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(5, 3)) if ax is None else (ax.figure, ax))
        if patient_id is not None:
            top = self.top(patient_id, k)
            ax.bar(range(len(top)), top["share"], color=np.where(top["share"] >= 0, "#C44E52", "#4C72B0"))
            ax.set(xlabel="tile (by share)", ylabel=f"share ({self.scale})",
                   title=f"Top {len(top)} tiles, patient {patient_id}")
        else:
            for pid, g in self.table.groupby("patient_id", sort=False):
                s = np.sort(np.abs(g["share"].to_numpy()))[::-1]
                if s.sum() > 0:
                    ax.plot(np.arange(1, len(s) + 1) / len(s), np.cumsum(s) / s.sum(), color="0.4", lw=0.6,
                            alpha=0.6)
            ax.set(xlabel="fraction of the patient's tiles", ylabel="cumulative |share|",
                   title="How concentrated the slide evidence is")
        fig.tight_layout()
        return fig

    def __repr__(self):
        n = self.patients.shape[0]
        return (f"<TileShap: {n} patients, {len(self.table)} tiles, features {self.features}, "
                f"{self.scale}>")

    def _repr_html_(self):
        import html

        return f"<p><code>{html.escape(repr(self))}</code></p>" + self.patients.head(20).to_html(float_format="%.4g")


def _spread_one(phi, contrib, attention, score_logit, ref_logit, method, tol):
    n = contrib.size
    total = contrib.sum()
    att = attention / attention.sum() if attention.sum() > 0 else np.full(n, 1.0 / n)
    if method == "rescale":
        delta = score_logit - ref_logit
        if abs(delta) > tol:
            w = 1.0 / n + (contrib - total / n) / delta
            return phi * w, delta, "rescale"
        return phi * att, delta, "attention"
    if abs(total) > tol:
        return phi * contrib / total, score_logit - ref_logit, "proportional"
    return phi * att, score_logit - ref_logit, "attention"


def tile_shap(
    explanation,
    attention,
    features=None,
    *,
    task=None,
    score_scale=None,
    reference="mean",
    method="rescale",
    tol=1e-3,
):
    """Spread the slide features' SHAP values over each patient's tiles.

    Parameters
    ----------
    explanation : shap.Explanation
        Two-dimensional explanation of the fused model (patients x features, with
        ``instance_names`` = patient_id), e.g. from :func:`lnmkit.explain.explain`.
    attention : pandas.DataFrame
        The per-tile table of the MIL run that made the slide scores
        (``CrossFitResult.attention``): ``patient_id``, ``slide_id``, ``x``, ``y``,
        ``attention``, ``contribution_<task>``.
    features : str or list of str, optional
        Slide-score columns of the fused model (default: every feature whose name
        contains ``lnm_score``, ``otc_score`` or ``risk_score``).
    task : str or dict, optional
        MIL task of each feature (``lnm``, ``otc``, ``survival``); inferred from the
        name by default.
    score_scale : {"probability", "logit"} or dict, optional
        How the feature relates to the MIL logit: ``probability`` (``lnm`` / ``otc``
        scores, ``s = sigmoid(logit)``) or ``logit`` (the survival risk score).
        Inferred from the task by default.
    reference : "mean", "median", float or dict, default="mean"
        Reference score of each feature, over the explanation's patients.
    method : {"rescale", "proportional"}, default="rescale"
        See the module notes: both make the shares of a patient sum exactly to the
        feature's SHAP value.
    tol : float, default=1e-3
        Below this ``|logit - reference logit|`` (rescale) or ``|sum c_i|``
        (proportional), shares follow the attention weights.

    Returns
    -------
    TileShap

    Raises
    ------
    ExplainError
        A feature is not in the explanation, or the tile table lacks the task's
        contribution column.
    """
    if method not in ("rescale", "proportional"):
        raise ValueError(f"tile_shap: method must be 'rescale' or 'proportional'; got {method!r}.")
    values = np.asarray(explanation.values, float)
    if values.ndim != 2:
        raise ValueError("tile_shap: needs a 2-D Explanation (patients x features); pass the cohort's explanation.")
    names = list(explanation.feature_names)
    if explanation.instance_names is None:
        raise ExplainError("tile_shap: the explanation has no instance_names (patient_id); build it with "
                           "lnmkit.explain.explain on a DataFrame indexed by patient_id.")
    pids = [str(p) for p in explanation.instance_names]
    if features is None:
        features = [f for f in names if any(k in f for k in ("lnm_score", "otc_score", "risk_score"))]
        if not features:
            raise ExplainError(f"tile_shap: no slide-score feature among {names[:12]}; pass features=.")
    features = [features] if isinstance(features, str) else list(features)
    missing = [f for f in features if f not in names]
    if missing:
        raise ExplainError(f"tile_shap: feature(s) {missing} are not in the explanation (features {names[:12]}).")
    need = {"patient_id", "slide_id", "x", "y", "attention"}
    if not need <= set(attention.columns):
        raise ExplainError(f"tile_shap: the tile table lacks column(s) {sorted(need - set(attention.columns))}; "
                           "pass CrossFitResult.attention.")
    tiles = attention.copy()
    tiles["patient_id"] = tiles["patient_id"].astype(str)
    tiles["slide_id"] = tiles["slide_id"].astype(str)
    tiles = tiles[tiles["patient_id"].isin(pids)].reset_index(drop=True)
    groups = {p: idx.to_numpy() for p, idx in tiles.groupby("patient_id", sort=False).groups.items()}
    rows = {p: {} for p in pids}
    out = tiles[["patient_id", "slide_id", "x", "y", "attention"]].copy()
    out["share"] = 0.0
    refs, unassigned = {}, set()
    att_all = tiles["attention"].to_numpy(float)
    for f in features:
        j = names.index(f)
        t = task[f] if isinstance(task, dict) else (task or _infer_task(f, tiles))
        col = f"contribution_{t}"
        if col not in tiles.columns:
            raise ExplainError(f"tile_shap: the tile table has no {col!r} for feature {f!r}; its columns are "
                               f"{list(tiles.columns)}.")
        sc = score_scale[f] if isinstance(score_scale, dict) else score_scale
        sc = sc or ("logit" if t == "survival" else "probability")
        if sc not in ("probability", "logit"):
            raise ValueError(f"tile_shap: score_scale must be 'probability' or 'logit'; got {sc!r}.")
        score = np.asarray(explanation.data[:, j], float)
        ref = reference[f] if isinstance(reference, dict) else reference
        if isinstance(ref, str):
            if ref not in ("mean", "median"):
                raise ValueError(f"tile_shap: reference must be 'mean', 'median' or a number; got {ref!r}.")
            ref = float(np.nanmean(score) if ref == "mean" else np.nanmedian(score))
        refs[f] = float(ref)
        to_logit = _logit if sc == "probability" else (lambda v: np.asarray(v, float))
        ref_logit = float(to_logit(ref))
        contrib_all = tiles[col].to_numpy(float)
        shares = np.zeros(len(tiles))
        for i, p in enumerate(pids):
            phi = float(values[i, j])
            rows[p][f"shap_{f}"] = phi
            rows[p][f"score_{f}"] = score[i]
            if p not in groups or not np.isfinite(score[i]):
                rows[p][f"method_{f}"] = "none"
                rows[p][f"delta_{f}"] = np.nan
                if phi != 0.0:
                    unassigned.add(p)
                continue
            idx = groups[p]
            s, delta, how = _spread_one(phi, contrib_all[idx], att_all[idx], float(to_logit(score[i])), ref_logit,
                                        method, tol)
            shares[idx] = s
            rows[p][f"delta_{f}"] = delta
            rows[p][f"method_{f}"] = how
        out[f"contribution_{f}"] = contrib_all
        out[f"share_{f}"] = shares
        out["share"] += shares
    patients = pd.DataFrame.from_dict(rows, orient="index")
    patients.index.name = "patient_id"
    patients["n_tiles"] = [len(groups.get(p, ())) for p in patients.index]
    patients["shap_slide"] = patients[[f"shap_{f}" for f in features]].sum(axis=1)
    scale = explanation.output_names if isinstance(explanation.output_names, str) else "model output"
    return TileShap(out.reset_index(drop=True), patients, features, refs, scale, sorted(unassigned))
