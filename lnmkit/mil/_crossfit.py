"""Cross-fitting: out-of-fold MIL scores, embeddings and attention per patient."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold

from lnmkit.exceptions import MILInputError, MILInputWarning
from lnmkit._io import atomic_path, atomic_write_text
from lnmkit.mil._data import as_patient_bags, load_bags
from lnmkit.mil._estimator import MILClassifier
from lnmkit.mil._metrics import auc_delong
from lnmkit.mil._targets import lnm_labels

__all__ = ["CrossFitResult", "cross_fit", "make_folds"]


def _looks_like_feature_set(obj):
    return hasattr(obj, "bag") and hasattr(obj, "slide_ids")


def make_folds(labels, groups, n_splits=5, random_state=0):
    """Fold number of each patient, stratified by label and split by group.

    Parameters
    ----------
    labels : pandas.Series
        0/1 (NaN allowed, stratified as its own class), indexed by patient_id.
    groups : pandas.Series
        Group of each patient (the patient itself, or e.g. a hospital); a group
        never spans two folds.
    n_splits : int, default=5
    random_state : int, default=0

    Returns
    -------
    pandas.Series of int
        Indexed by patient_id.
    """
    strata = labels.fillna(-1).astype(int).to_numpy()
    n_groups = groups.nunique()
    if n_splits < 2 or n_splits > n_groups:
        raise ValueError(
            f"cross_fit: n_splits must be between 2 and the number of groups ({n_groups}); got {n_splits}."
        )
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    folds = np.full(len(labels), -1)
    for k, (_, test) in enumerate(sgkf.split(np.zeros(len(labels)), strata, groups.to_numpy())):
        folds[test] = k
    return pd.Series(folds, index=labels.index, name="fold")


def _given_folds(folds, pids):
    """Predefined folds as a Series over ``pids`` with labels 0..K-1."""
    given = folds if isinstance(folds, pd.Series) else pd.Series(dict(folds))
    given = given.copy()
    given.index = given.index.astype(str)
    given = given.reindex(pids)
    if given.isna().any():
        raise MILInputError(f"cross_fit: folds has no fold for patient(s) {given.index[given.isna()][:5].tolist()}.")
    labels = sorted(given.unique())
    if len(labels) < 2:
        raise MILInputError(f"cross_fit: folds must hold at least two folds; got {labels}.")
    relabel = {v: k for k, v in enumerate(labels)}
    return given.map(relabel).astype(int).rename("fold")


@dataclass
class CrossFitResult:
    """Out-of-fold MIL predictions and the models that made them.

    Attributes
    ----------
    oof : pandas.DataFrame
        Indexed by patient_id: ``lnm_score``, ``otc_score`` (and ``risk_score``),
        ``emb_0..emb_{k-1}`` and ``fold``; every value comes from the model that did
        not see the patient.
    attention : pandas.DataFrame
        Out-of-fold per-tile table: patient_id, slide_id, x, y, attention,
        attention_pct, contribution_<task>, fold.
    models : list of MILClassifier
        One per fold; ``models[k]`` never saw the patients with ``fold == k``.
    outcomes : pandas.DataFrame
        Outcomes of the patients in ``oof`` (for metrics).
    params : dict
        n_splits, random_state and the estimator parameters.
    """

    oof: pd.DataFrame
    attention: pd.DataFrame
    models: list
    outcomes: pd.DataFrame
    params: dict = field(default_factory=dict)

    @property
    def folds(self):
        """Fold of each patient (Series indexed by patient_id)."""
        return self.oof["fold"]

    def metrics(self, level=0.95):
        """Out-of-fold ROC AUCs with DeLong confidence intervals.

        Parameters
        ----------
        level : float, default=0.95

        Returns
        -------
        pandas.DataFrame
            One row per binary task: auc, auc_lower_<level>, auc_upper_<level>, n, n_pos.
        """
        pct = int(round(level * 100))
        rows = []
        lnm = lnm_labels(self.outcomes.loc[self.oof.index], "CrossFitResult.metrics")
        if "lnm_score" in self.oof:
            rows.append(("lnm", auc_delong(lnm, self.oof["lnm_score"], level)))
        if "otc_score" in self.oof and "otc" in self.outcomes:
            otc = pd.to_numeric(self.outcomes.loc[self.oof.index, "otc"], errors="coerce")
            otc = otc.where(lnm == 0)  # OTC is defined in pN0 patients only
            rows.append(("otc", auc_delong(otc, self.oof["otc_score"], level)))
        table = pd.DataFrame(
            [
                {"task": t, "auc": r["auc"], f"auc_lower_{pct}": r["lower"], f"auc_upper_{pct}": r["upper"],
                 "n": r["n"], "n_pos": r["n_pos"]}
                for t, r in rows
            ]
        )
        return table.set_index("task")

    def predict(self, bags):
        """Scores for new patients: the mean over the fold models.

        Embeddings are averaged too; they come from different networks, so use
        them as features only together with the averaged scores of the same call.

        Parameters
        ----------
        bags : dict patient_id -> array or PatientBag

        Returns
        -------
        pandas.DataFrame
            Like ``oof`` without ``fold``.
        """
        preds = [m.predict(bags) for m in self.models]
        return sum(preds) / len(preds)

    def predict_attention(self, bags):
        """Per-tile attention averaged over the fold models (percentile re-ranked per slide)."""
        from lnmkit.mil._estimator import percentile_rank

        tabs = [m.predict_attention(bags) for m in self.models]
        out = tabs[0].copy()
        num = [c for c in out.columns if c == "attention" or c.startswith("contribution_")]
        out[num] = sum(t[num].to_numpy() for t in tabs) / len(tabs)
        out["attention_pct"] = out.groupby("slide_id")["attention"].transform(percentile_rank)
        return out

    def plot(self, ax=None):
        """ROC curves of the out-of-fold scores; returns a matplotlib Figure."""
        import matplotlib.pyplot as plt
        from sklearn.metrics import roc_curve

        fig, ax = (plt.subplots(figsize=(4.5, 4.5)) if ax is None else (ax.figure, ax))
        table = self.metrics()
        lnm = lnm_labels(self.outcomes.loc[self.oof.index])
        for task in table.index:
            y = lnm if task == "lnm" else pd.to_numeric(self.outcomes.loc[self.oof.index, "otc"],
                                                        errors="coerce").where(lnm == 0)
            ok = y.notna()
            if y[ok].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(y[ok], self.oof.loc[ok, f"{task}_score"])
            r = table.loc[task]
            ax.plot(fpr, tpr, label=f"{task.upper()} AUC {r['auc']:.2f} [{r.iloc[1]:.2f}, {r.iloc[2]:.2f}]")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="Out-of-fold ROC", aspect="equal")
        ax.legend(loc="lower right", fontsize=8)
        return fig

    def __repr__(self):
        parts = []
        table = self.metrics()
        for task, r in table.iterrows():
            parts.append(f"{task.upper()} AUC={r['auc']:.2f} [{r.iloc[1]:.2f}, {r.iloc[2]:.2f}]")
        arch = self.params.get("estimator", {}).get("arch", "?")
        return (f"<CrossFitResult: {arch}, {len(self.oof)} patients, {len(self.models)} folds, "
                + ", ".join(parts) + ">")

    def _repr_html_(self):
        return f"<p><code>{self!r}</code></p>" + self.metrics().to_html(float_format="%.3f")

    # ------------------------------------------------------------ persistence
    def save(self, path):
        """Write the result into folder ``path`` (the layout ``lnmkit mil`` writes).

        Layout: ``oof_scores.csv``, ``attention/<slide_id>.csv`` (the tile table of
        each slide, in its tile order; columns x, y, attention, attention_pct,
        contribution_<task>, patient_id, fold), ``outcomes.csv``, ``crossfit.json``
        and ``models/fold_<k>/`` (safetensors + JSON).

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "oof_scores.csv") as tmp:
            self.oof.to_csv(tmp)
        first = ["x", "y", "attention", "attention_pct"]
        slides = []
        for sid, tab in self.attention.groupby("slide_id", sort=False):
            slides.append(str(sid))
            columns = first + [c for c in tab.columns if c not in first and c != "slide_id"]
            with atomic_path(path / "attention" / f"{sid}.csv") as tmp:
                tab[columns].to_csv(tmp, index=False, float_format="%.8g")
        with atomic_path(path / "outcomes.csv") as tmp:
            self.outcomes.to_csv(tmp)
        for k, m in enumerate(self.models):
            m.save(path / "models" / f"fold_{k}")
        atomic_write_text(path / "crossfit.json", json.dumps(
            {"format": "lnmkit.mil.CrossFitResult", "format_version": 2, "n_models": len(self.models),
             "slides": slides, "params": self.params}, indent=2))
        return path

    @classmethod
    def load(cls, path):
        """Read a result written by :meth:`save` or by ``lnmkit mil`` / :func:`run_mil`.

        Parameters
        ----------
        path : str or path-like
            The folder.

        Returns
        -------
        CrossFitResult
            With its fold models: ``CrossFitResult.load(out).predict(bags)`` scores new patients.

        Raises
        ------
        FileNotFoundError
            If the folder holds no ``crossfit.json`` or misses one of its files.
        """
        path = Path(path)
        meta_path = path / "crossfit.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"CrossFitResult.load: {meta_path} not found; point to a folder written by "
                                    "CrossFitResult.save() or lnmkit mil --out.")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != "lnmkit.mil.CrossFitResult":
            raise ValueError(f"CrossFitResult.load: {meta_path} has format {meta.get('format')!r}; expected "
                             "'lnmkit.mil.CrossFitResult'.")
        oof = pd.read_csv(path / "oof_scores.csv", dtype={"patient_id": str}).set_index("patient_id")
        tables = []
        for sid in meta.get("slides", []):
            file = path / "attention" / f"{sid}.csv"
            if not file.is_file():
                raise FileNotFoundError(f"CrossFitResult.load: {file} not found; {meta_path} lists slide {sid!r}.")
            tab = pd.read_csv(file, dtype={"patient_id": str})
            tab.insert(1, "slide_id", str(sid))
            tables.append(tab)
        att = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
            columns=["patient_id", "slide_id", "x", "y", "attention", "attention_pct", "fold"])
        lead = ["patient_id", "slide_id", "x", "y"]
        att = att[lead + [c for c in att.columns if c not in lead]]
        outcomes = pd.read_csv(path / "outcomes.csv", dtype={"patient_id": str}).set_index("patient_id")
        models = [MILClassifier.load(path / "models" / f"fold_{k}") for k in range(meta["n_models"])]
        return cls(oof, att, models, outcomes, meta.get("params", {}))


def cross_fit(
    bags,
    outcomes,
    n_splits=5,
    groups=None,
    estimator=None,
    random_state=0,
    progress=True,
    folds=None,
):
    """Cross-fit a MIL estimator and return out-of-fold scores, embeddings and attention.

    Folds are stratified by ``pn_status`` and split by ``groups`` (by patient by
    default; several slides of one patient are one bag, so they are never split).
    Each patient's scores and tile attention come from the one fold model that
    was trained without that patient; feature standardisation and early
    stopping are refitted inside each fold.

    Parameters
    ----------
    bags : dict, or lnmkit.features.FeatureSet
        dict ``patient_id -> (n_tiles, n_features) array | PatientBag``; or a FeatureSet,
        in which case ``outcomes`` must be an ``lnmkit.Cohort`` (bags are read with
        :func:`load_bags`).
    outcomes : pandas.DataFrame or lnmkit.Cohort
        Indexed by patient_id with ``pn_status`` (and ``otc``, survival columns as
        needed by the estimator's tasks). Patients without a bag are ignored;
        patients with a bag but no outcome row are left out with a
        :class:`~lnmkit.exceptions.MILInputWarning` naming them (``run_mil`` does the
        same); patients with a row but unknown ``pn_status`` are scored out of
        fold but contribute no LNM loss.
    n_splits : int, default=5
    groups : pandas.Series or mapping, optional
        Group of each patient (e.g. centre); defaults to the patient itself.
    estimator : MILClassifier, optional
        Template (cloned per fold); default ``MILClassifier(random_state=random_state)``.
    random_state : int, default=0
        Seeds the fold assignment.
    progress : bool, default=True
    folds : pandas.Series or mapping, optional
        Predefined fold of each patient (``patient_id -> int``), for example the
        outer folds of a downstream evaluation; every patient with a bag needs one.
        Overrides ``n_splits``, ``groups`` and ``random_state`` for the split; fold
        numbers are relabelled 0..K-1 in sorted order.

    Returns
    -------
    CrossFitResult

    Examples
    --------
    >>> res = cross_fit(bags, outcomes, n_splits=5)  # doctest: +SKIP
    >>> res.metrics()  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    if _looks_like_feature_set(bags):
        if not hasattr(outcomes, "outcomes"):
            raise TypeError("cross_fit: with a FeatureSet, pass the lnmkit.Cohort as outcomes.")
        cohort = outcomes
        bags = load_bags(bags, cohort, progress=progress)
        outcomes = cohort.outcomes
    elif hasattr(outcomes, "outcomes") and not isinstance(outcomes, pd.DataFrame):
        outcomes = outcomes.outcomes
    if not isinstance(outcomes, pd.DataFrame):
        raise TypeError(f"cross_fit: outcomes must be a DataFrame indexed by patient_id; got {type(outcomes).__name__}.")
    bags = as_patient_bags(bags, where="cross_fit")
    outcomes = outcomes.copy()
    outcomes.index = outcomes.index.astype(str)
    missing = [p for p in bags if p not in outcomes.index]
    if len(missing) == len(bags):
        raise MILInputError(
            f"cross_fit: none of the {len(bags)} patient(s) with a bag has an outcome row, e.g. {missing[:5]}; "
            "outcomes must be indexed by the bags' patient_id."
        )
    if missing:
        # One rule for cross_fit and run_mil: no outcome row, no training or evaluation.
        warnings.warn(MILInputWarning(
            f"cross_fit: left out {len(missing)} patient(s) with a bag but no outcome row: "
            + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            + "; give them a row (empty pn_status = unknown) to have them scored out of fold."), stacklevel=2)
        bags = {p: b for p, b in bags.items() if p in outcomes.index}
    pids = list(bags)
    labels = lnm_labels(outcomes.loc[pids], "cross_fit")
    if groups is None:
        grp = pd.Series(pids, index=pids)
    else:
        grp = pd.Series({p: groups[p] for p in pids}) if not isinstance(groups, pd.Series) else groups.reindex(pids)
        if grp.isna().any():
            raise MILInputError(f"cross_fit: groups has no value for patient(s) {grp.index[grp.isna()][:5].tolist()}.")
    if folds is None:
        folds = make_folds(labels, grp, n_splits, random_state)
    else:
        folds = _given_folds(folds, pids)
        n_splits = int(folds.nunique())
    template = estimator if estimator is not None else MILClassifier(random_state=random_state)

    scores, tiles, models = [], [], []
    for k in tqdm(range(n_splits), desc="cross-fit folds", disable=not progress):
        train = [p for p in pids if folds[p] != k]
        test = [p for p in pids if folds[p] == k]
        model = clone(template).fit({p: bags[p] for p in train}, outcomes.loc[train])
        s, t = model.predict_with_attention({p: bags[p] for p in test})
        s["fold"] = k
        t["fold"] = k
        scores.append(s)
        tiles.append(t)
        models.append(model)
    oof = pd.concat(scores).loc[pids]
    attention = pd.concat(tiles, ignore_index=True)
    params = {"n_splits": int(n_splits), "random_state": int(random_state),
              "estimator": {k: (list(v) if isinstance(v, tuple) else v) for k, v in template.get_params().items()}}
    return CrossFitResult(oof, attention, models, outcomes.loc[pids], params)
