"""Leak-free stacking of MIL slide scores: nested cross-fitting by patient."""

from __future__ import annotations

import pandas as pd

from lnmkit.models._folds import check_folds, make_patient_folds
from lnmkit.models._stacking import NestedFeatures

__all__ = ["nested_cross_fit", "SLIDE_SCORE_COLUMNS"]

#: MIL score columns offered to fused models (``emb_*`` never: each fold has its own basis).
SLIDE_SCORE_COLUMNS = ("lnm_score", "otc_score", "risk_score")


def _score_frame(scores, columns, prefix):
    keep = [c for c in columns if c in scores.columns]
    return scores[keep].add_prefix(prefix)


def nested_cross_fit(bags, outcomes, *, folds=None, n_splits=5, inner_splits=None, groups=None, estimator=None,
                     columns=("lnm_score",), prefix="slide_", random_state=0, progress=True):
    """Slide scores that are out-of-fold at both levels of a nested evaluation.

    For each outer fold ``k``: the MIL model is cross-fitted on the outer-training
    patients only (their inner out-of-fold scores train the fused model), and a MIL
    model fitted on all outer-training patients scores the outer-test patients,
    which no MIL model behind fold ``k`` has seen. A last ordinary cross-fit over
    every patient (on the outer folds) gives the scores that train the fused model
    for new patients, whose slide scores then come from that cross-fit's fold
    ensemble (``meta["final_crossfit"].predict``). Cost: K x (K + 1) + K MIL fits
    for K outer and K inner folds.

    Only score columns are offered (``emb_*`` embeddings of different fold
    networks are unrelated coordinates and are never passed on).

    Parameters
    ----------
    bags : dict patient_id -> array or PatientBag
        As for :func:`lnmkit.mil.cross_fit` (load a FeatureSet with
        :func:`lnmkit.mil.load_bags` first).
    outcomes : pandas.DataFrame or lnmkit.Cohort
        With ``pn_status`` (and whatever the MIL tasks need), indexed by patient_id.
    folds : pandas.Series of int, optional
        Outer folds; by default stratified by pN status and split by ``groups`` over the
        patients with a bag. Given folds may also name patients without a bag (for
        example every patient of a fusion table): they keep their fold and get missing
        slide scores (``slide_missing`` = 1 in the table).
    n_splits : int, default=5
        Outer folds when ``folds`` is not given.
    inner_splits : int, optional
        Inner cross-fit folds; default ``n_splits``.
    groups : pandas.Series, optional
        Group of each patient (e.g. centre), kept within one fold at both levels.
    estimator : lnmkit.mil.MILClassifier, optional
        Template, cloned for every fit.
    columns : sequence of str, default=("lnm_score",)
        MIL score columns to keep (from ``lnm_score``, ``otc_score``, ``risk_score``).
    prefix : str, default="slide_"
        Prefix of the returned columns (``slide_lnm_score``), as in the fusion table.
    random_state : int, default=0
    progress : bool, default=True

    Returns
    -------
    lnmkit.models.NestedFeatures
        ``source="slide"``; ``meta`` holds the outer cross-fits' parameters and the
        final :class:`~lnmkit.mil.CrossFitResult` under ``"final_crossfit"``.

    Raises
    ------
    ValueError
        If ``columns`` names an embedding or an unknown score.
    """
    from tqdm.auto import tqdm

    from lnmkit.mil import MILClassifier, cross_fit
    from lnmkit.mil._data import as_patient_bags
    from lnmkit.mil._targets import lnm_labels

    bad = [c for c in columns if c not in SLIDE_SCORE_COLUMNS]
    if bad:
        raise ValueError(f"nested_cross_fit: columns must be among {list(SLIDE_SCORE_COLUMNS)} (embeddings are "
                         f"not comparable across fold networks); got {bad} instead.")
    if hasattr(outcomes, "outcomes") and not isinstance(outcomes, pd.DataFrame):
        outcomes = outcomes.outcomes
    bags = as_patient_bags(bags, where="nested_cross_fit")
    outcomes = outcomes.copy()
    outcomes.index = outcomes.index.astype(str)
    pids = list(bags)
    labels = lnm_labels(outcomes.reindex(pids), "nested_cross_fit")
    if folds is None:
        outer = make_patient_folds(pids, labels.to_numpy(), n_splits=n_splits, groups=groups,
                                   random_state=random_state, where="nested_cross_fit")
    else:
        # folds may also name patients without a bag (they get missing slide scores downstream)
        given = folds if isinstance(folds, pd.Series) else pd.Series(dict(folds))
        given.index = given.index.astype(str)
        outer = check_folds(given, given.index.union(pd.Index(pids)), "nested_cross_fit")
    inner_splits = int(inner_splits or outer.nunique())
    template = estimator if estimator is not None else MILClassifier(random_state=random_state)
    grp = None if groups is None else (groups if isinstance(groups, pd.Series) else pd.Series(dict(groups)))

    train, test, inner_params = {}, {}, {}
    for k in tqdm(sorted(outer.unique()), desc="nested cross-fit: outer folds", disable=not progress):
        tr = [p for p in pids if outer[p] != k]
        te = [p for p in pids if outer[p] == k]
        inner = make_patient_folds(tr, labels.loc[tr].to_numpy(), n_splits=inner_splits,
                                   groups=None if grp is None else grp.reindex(tr), random_state=random_state + 1 + int(k),
                                   where="nested_cross_fit (inner folds)")
        res = cross_fit({p: bags[p] for p in tr}, outcomes.loc[tr], folds=inner, estimator=template,
                        progress=False)
        train[int(k)] = _score_frame(res.oof, columns, prefix)
        from sklearn.base import clone

        model = clone(template).fit({p: bags[p] for p in tr}, outcomes.loc[tr])
        test[int(k)] = (_score_frame(model.predict({p: bags[p] for p in te}), columns, prefix) if te
                        else train[int(k)].iloc[:0].copy())
        inner_params[int(k)] = res.params
    final = cross_fit(bags, outcomes.loc[pids], folds=outer.loc[pids], estimator=template, progress=False)
    meta = {"columns": list(columns), "prefix": prefix, "n_outer": int(outer.nunique()),
            "n_inner": inner_splits, "estimator": final.params.get("estimator", {}), "final_crossfit": final}
    return NestedFeatures(folds=outer, train=train, test=test, final=_score_frame(final.oof, columns, prefix),
                          source="slide", meta=meta)
