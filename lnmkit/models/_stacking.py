"""Nested out-of-fold features for stacking: the container any level-0 model fills.

A downstream (level-1) model that is itself cross-validated may only see level-0
scores that are out-of-fold at both levels. :class:`NestedFeatures` holds, for each
outer fold ``k``:

* ``train[k]``: scores of the outer-training patients, out-of-fold *inside* them
  (a cross-fit of the level-0 model on the outer-training patients only);
* ``test[k]``: scores of the outer-test patients from a level-0 model fitted on
  the outer-training patients (it never saw them);

and ``final``: ordinary out-of-fold scores of every patient (one cross-fit over
all of them), to train the model that is used for new patients. No outer-test
patient of fold ``k`` ever influenced ``train[k]`` or ``test[k]``.

:func:`lnmkit.fusion.nested_cross_fit` builds one from MIL slide bags; any other
level-0 model (a radiomics model, a survival model) can fill the same container.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from lnmkit.exceptions import LeakageError

__all__ = ["NestedFeatures"]


@dataclass(frozen=True)
class NestedFeatures:
    """Level-0 scores that are out-of-fold at both levels of a nested evaluation.

    Attributes
    ----------
    folds : pandas.Series of int
        Outer fold of each patient (indexed by ``patient_id``); a downstream
        evaluation must use exactly these folds.
    train : dict int -> pandas.DataFrame
        For outer fold ``k``: inner out-of-fold scores of the patients with
        ``folds != k``.
    test : dict int -> pandas.DataFrame
        For outer fold ``k``: scores of the patients with ``folds == k`` from a model
        fitted without them (patients without level-0 input, e.g. without a slide, may
        be absent: they get missing scores).
    final : pandas.DataFrame
        Out-of-fold scores of every patient (one cross-fit), for the final model.
    source : str, default="level-0"
        What produced the scores (for provenance and messages).
    meta : dict
        Free-form description (for example the MIL parameters).

    Examples
    --------
    Build it from any level-0 model (here scores given by hand):

    >>> import pandas as pd
    >>> f = pd.Series([0, 0, 1, 1], index=["a", "b", "c", "d"], name="fold")
    >>> s = lambda ids: pd.DataFrame({"score": range(len(ids))}, index=ids)
    >>> nf = NestedFeatures(f, {0: s(["c", "d"]), 1: s(["a", "b"])},
    ...                     {0: s(["a", "b"]), 1: s(["c", "d"])}, s(["a", "b", "c", "d"]))
    >>> nf.columns
    ['score']
    """

    folds: pd.Series
    train: dict
    test: dict
    final: pd.DataFrame
    source: str = "level-0"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        folds = self.folds
        for k in sorted(folds.unique()):
            if k not in self.train or k not in self.test:
                raise LeakageError(f"NestedFeatures: outer fold {k} has no train or test scores.")
            tr, te = self.train[k].index.astype(str), self.test[k].index.astype(str)
            outer_test = set(folds.index[folds == k].astype(str))
            if set(tr) & outer_test:
                bad = sorted(set(tr) & outer_test)[:5]
                raise LeakageError(f"NestedFeatures: train scores of outer fold {k} include outer-test "
                                   f"patient(s) {bad}.")
            if set(te) - outer_test:
                bad = sorted(set(te) - outer_test)[:5]
                raise LeakageError(f"NestedFeatures: test scores of outer fold {k} include patient(s) {bad} of "
                                   f"other folds.")

    @property
    def columns(self):
        """Score column names (list of str)."""
        return list(self.final.columns)

    def check_folds(self, folds, where):
        """Raise :class:`LeakageError` unless ``folds`` are the outer folds of these scores.

        Parameters
        ----------
        folds : pandas.Series of int, indexed by patient_id
        where : str
        """
        mine = self.folds.copy()
        mine.index = mine.index.astype(str)
        theirs = folds.reindex(mine.index)
        # the same partition (fold numbers may be relabelled)
        same = theirs.notna().all() and pd.crosstab(mine, theirs).gt(0).sum(axis=1).eq(1).all() and \
            pd.crosstab(mine, theirs).gt(0).sum(axis=0).eq(1).all()
        if not same:
            raise LeakageError(
                f"{where}: the nested {self.source} scores were made for other outer folds than the ones "
                f"used here; pass folds=nested.folds (or leave folds unset) so that no outer-test patient "
                f"influenced a training score.")

    def fold_map(self, folds):
        """Outer fold number of these scores for each fold number of ``folds``."""
        mine = self.folds.copy()
        mine.index = mine.index.astype(str)
        pairs = pd.DataFrame({"theirs": folds.reindex(mine.index), "mine": mine}).drop_duplicates()
        return dict(zip(pairs["theirs"].astype(int), pairs["mine"].astype(int)))
