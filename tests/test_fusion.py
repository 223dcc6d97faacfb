"""lnmkit.fusion: the fusion table, and leak-free stacking of MIL slide scores.

MIL runs use tiny synthetic bags (30 tiles x 6 features) and few epochs, so every
nested cross-fit here takes seconds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lnmkit.exceptions import LeakageError, LeakageWarning, ModelInputError, VersionWarning
from lnmkit.fusion import FusionTable, build_fusion_table, nested_cross_fit
from lnmkit.mil import MILClassifier, cross_fit
from lnmkit.models import LNMLogisticRegression, compare_models, nested_cv

TINY = dict(tasks=("lnm",), hidden=8, max_epochs=8, batch_size=8, patience=3, averaging_epochs=0, val_fraction=0.0,
            lr=5e-3)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tables_cohort(path, n, seed):
    from lnmkit.cohort import Cohort
    from lnmkit.synth import make_cohort

    make_cohort(path, n_patients=n, seed=seed, slides=False, progress=False)
    truth = pd.read_csv(path / "truth" / "patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    return Cohort.from_dir(path, check_files=False), truth


def _bags(ids, signal, seed):
    """30 tiles x 6 features per patient; focal "tumour" tiles (features 0-2 raised), more of
    them the higher the patient's ``signal`` (0 to 12 tiles: a focal pattern, as in slides)."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in ids:
        f = rng.normal(size=(30, 6)).astype(np.float32)
        n_hot = int(round(12 / (1 + np.exp(-2.0 * float(signal.get(p, 0.0))))))
        f[rng.choice(30, n_hot, replace=False), :3] += 3.0
        out[p] = f
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _tables_cohort(tmp_path_factory.mktemp("fusion_small"), 40, seed=31)


# ---------------------------------------------------------------------------- fusion table
def test_clinical_columns_are_encoded_from_the_schema(small):
    cohort, _ = small
    t = build_fusion_table(cohort)
    raw = cohort.clinical
    stage = t["ct_stage"]
    for pid in raw.index:
        v = raw.loc[pid, "ct_stage"]
        if pd.isna(v) or v == "cTX":
            assert np.isnan(stage[pid])
        else:
            assert stage[pid] == int(str(v)[2])
    assert t["grade"].dropna().isin([1, 2, 3, 4]).all()
    # nominal columns keep every schema level, the first one is the reference
    assert list(t["tumour_site"].cat.categories) == ["cardia", "fundus", "body", "antrum", "pylorus", "whole",
                                                     "other"]
    assert list(t["sex"].cat.categories) == ["M", "F"]
    assert t["lvi"].dtype == float
    assert set(t.provenance.values()) == {"clinical"}
    d = t.describe()
    assert list(d["column"]) == list(t.columns)
    assert d.set_index("column").loc["sex", "levels"].startswith("M (reference)")


def test_level_outside_the_encoding_names_patient_and_value(small):
    cohort, _ = small
    bad = cohort.clinical.copy()
    bad["ct_stage"] = bad["ct_stage"].astype(object)
    bad.loc[bad.index[2], "ct_stage"] = "cT5"

    class Fake:
        clinical = bad
        outcomes = cohort.outcomes

    with pytest.raises(ModelInputError, match=rf"'ct_stage'.*'cT5' for patient_id '{bad.index[2]}'"):
        build_fusion_table(Fake())


def test_radiology_slide_extra_provenance_indicators_and_round_trip(small, tmp_path):
    cohort, truth = small
    ids = list(cohort.clinical.index)
    bags = _bags(ids[:-3], truth["morph_score"], seed=1)  # three patients without slides
    res = cross_fit(bags, cohort.outcomes, n_splits=3, estimator=MILClassifier(**TINY), progress=False)
    extra = pd.DataFrame({"centre": ["A", "B"] * (len(ids) // 2), "score_x": np.arange(len(ids), dtype=float)},
                         index=ids)
    t = build_fusion_table(cohort, slide=res, radiology=True, extra=extra)
    assert t.slide_source == "crossfit"
    assert not any(c.startswith(("emb_", "slide_emb")) for c in t.columns)
    assert t.modality_columns("slide") == ["slide_lnm_score", "slide_missing"]
    assert t["slide_missing"].loc[ids[-3:]].eq(1).all() and t["slide_missing"].loc[ids[:-3]].eq(0).all()
    assert "rad_radiology_missing" in t.indicators and "slide_missing" in t.indicators
    assert "rad_n_category" not in t.columns and "rad_n_category_code" in t.columns
    assert isinstance(t["centre"].dtype, pd.CategoricalDtype) and t["score_x"].dtype == float
    assert t.provenance["centre"] == "extra"
    assert "<table" in t._repr_html_()
    path = t.save(tmp_path / "fusion.csv")
    back = FusionTable.load(path)
    pd.testing.assert_frame_equal(back.frame, t.frame)
    assert back.provenance == t.provenance and back.indicators == t.indicators
    meta = path.with_name(path.name + ".json")
    meta.write_text(meta.read_text().replace('"lnmkit_version": "', '"lnmkit_version": "0.0.0-'))
    with pytest.warns(VersionWarning):
        FusionTable.load(path)


def test_slide_scores_without_out_of_fold_provenance_are_refused(small):
    cohort, _ = small
    scores = pd.DataFrame({"lnm_score": np.linspace(0, 1, len(cohort.clinical))}, index=cohort.clinical.index)
    with pytest.raises(LeakageError, match="no out-of-fold provenance"):
        build_fusion_table(cohort, slide=scores)
    with pytest.warns(LeakageWarning):
        t = build_fusion_table(cohort, slide=scores, allow_in_sample=True)
    assert t.slide_source == "in-sample"
    with pytest.raises(ModelInputError, match="embeddings"):
        build_fusion_table(cohort, slide=scores.assign(emb_0=0.0, fold=0))
    # single-level out-of-fold scores reused under the folds of a cross-validated model
    t = build_fusion_table(cohort, slide=scores.assign(fold=np.arange(len(scores)) % 3))
    y = t.lnm_labels()
    with pytest.raises(LeakageError, match="single cross-fit"):
        nested_cv(LNMLogisticRegression(), t, y, missing_outcome="drop", n_splits=3)
    y_gap = y.copy()
    y_gap.iloc[0] = np.nan  # dropping a patient must not lose the provenance of the columns
    with pytest.raises(LeakageError, match="single cross-fit"):
        compare_models(t, y_gap, {"slide": ["age", "slide_lnm_score"]}, missing_outcome="drop", n_splits=3,
                       n_bootstrap=0)
    with pytest.warns(LeakageWarning):
        r = nested_cv(LNMLogisticRegression(), t, y, missing_outcome="drop", n_splits=3, allow_leakage=True,
                      features=["age", "slide_lnm_score"])
    assert r.leaky and "LEAKY" in repr(r)


def test_cross_fit_accepts_predefined_folds(small):
    cohort, truth = small
    ids = list(cohort.clinical.index)
    bags = _bags(ids, truth["morph_score"], seed=2)
    folds = pd.Series(np.arange(len(ids)) % 4 * 10, index=ids)  # labels 0, 10, 20, 30
    res = cross_fit(bags, cohort.outcomes, folds=folds, estimator=MILClassifier(**dict(TINY, max_epochs=2)),
                    progress=False)
    assert len(res.models) == 4
    assert (res.oof["fold"] == (folds // 10).loc[res.oof.index]).all()


# -------------------------------------------------------------------------------- stacking
def test_nested_cross_fit_structure(small):
    cohort, truth = small
    ids = list(cohort.clinical.index)
    bags = _bags(ids, truth["morph_score"], seed=3)
    nf = nested_cross_fit(bags, cohort.outcomes, n_splits=3, estimator=MILClassifier(**dict(TINY, max_epochs=3)),
                          columns=("lnm_score",), progress=False)
    assert nf.columns == ["slide_lnm_score"] and nf.source == "slide"
    for k in range(3):
        test_ids = set(nf.folds.index[nf.folds == k])
        assert set(nf.test[k].index) == test_ids
        assert not set(nf.train[k].index) & test_ids
        assert set(nf.train[k].index) | test_ids == set(ids)
    assert (nf.meta["final_crossfit"].oof["fold"] == nf.folds.loc[nf.meta["final_crossfit"].oof.index]).all()
    with pytest.raises(ValueError, match="embeddings"):
        nested_cross_fit(bags, cohort.outcomes, columns=("emb_0",))


def test_noise_slide_scores_nested_covers_chance_while_in_sample_is_optimistic(tmp_path):
    rng = np.random.default_rng(41)
    n = 60
    ids = [f"N{i:03d}" for i in range(n)]
    y = pd.Series(rng.permutation(np.r_[np.ones(n // 2), np.zeros(n // 2)]).astype(int), index=ids)
    outcomes = pd.DataFrame({"pn_status": np.where(y == 1, "pN+", "pN0")}, index=pd.Index(ids, name="patient_id"))
    bags = {p: rng.normal(size=(30, 6)).astype(np.float32) for p in ids}  # no label information
    X = pd.DataFrame({"age": rng.normal(60, 10, n)}, index=ids)

    nf = nested_cross_fit(bags, outcomes, n_splits=3, estimator=MILClassifier(**TINY), progress=False)
    honest = nested_cv(LNMLogisticRegression(), X, y, stacked=nf).evaluate(n_bootstrap=0).roc
    assert honest.lower < 0.5 < honest.upper

    memoriser = MILClassifier(tasks=("lnm",), hidden=64, lr=5e-3, max_epochs=15, val_fraction=0.0,
                              averaging_epochs=0)
    in_sample = memoriser.fit(bags, outcomes).predict(bags)[["lnm_score"]]
    with pytest.warns(LeakageWarning):
        leaky = FusionTable(X.join(in_sample.add_prefix("slide_")), {"age": "clinical", "slide_lnm_score": "slide"},
                            slide_source="in-sample")
        naive = nested_cv(LNMLogisticRegression(), leaky, y, folds=nf.folds, allow_leakage=True)
    naive_roc = naive.evaluate(n_bootstrap=0).roc
    assert naive_roc.auc > honest.auc + 0.2
    assert naive_roc.lower > 0.5  # confidently "better than chance" on pure noise


def test_fused_model_beats_clinical_only_in_nested_auc(tmp_path):
    cohort, truth = _tables_cohort(tmp_path / "c", 200, seed=2027)  # a seed no other test uses
    ids = list(cohort.clinical.index)
    bags = _bags(ids, truth["morph_score"], seed=7)
    mil = MILClassifier(**dict(TINY, arch="mean", max_epochs=12))
    nf = nested_cross_fit(bags, cohort.outcomes, n_splits=3, estimator=mil, progress=False)
    table = build_fusion_table(cohort, slide=nf, radiology=True)
    y = table.lnm_labels()
    clinical = table.modality_columns("clinical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rare levels absent from a training fold
        cmp = compare_models(table, y, {"clinical": clinical, "clinical + slide": clinical + nf.columns},
                             stacked=nf, n_bootstrap=0, missing_outcome="drop")
    t = cmp.table
    print(t[["auc", "auc_lower_95", "auc_upper_95", "delta_auc", "delta_auc_lower_95", "delta_auc_upper_95",
             "delta_auc_p"]].to_string())
    # measured: clinical 0.703, clinical + slide 0.747, delta 0.044 [0.013, 0.075]
    assert t.loc["clinical + slide", "delta_auc"] > 0.02
    assert t.loc["clinical + slide", "delta_auc_lower_95"] > 0
    assert np.isfinite(t.loc["clinical + slide", ["nri_continuous", "idi"]]).all()


def test_patients_without_slides_keep_their_fold_and_get_missing_scores(small):
    cohort, truth = small
    ids = list(cohort.clinical.index)
    bags = _bags(ids[4:], truth["morph_score"], seed=4)  # four patients without a slide
    y = (cohort.outcomes["pn_status"] == "pN+").astype(int)
    from lnmkit.models import make_patient_folds

    folds = make_patient_folds(ids, y.loc[ids].to_numpy(), n_splits=3, random_state=0)
    nf = nested_cross_fit(bags, cohort.outcomes, folds=folds, estimator=MILClassifier(**dict(TINY, max_epochs=2)),
                          progress=False)
    assert len(nf.folds) == len(ids)
    table = build_fusion_table(cohort, slide=nf)
    assert table["slide_missing"].loc[ids[:4]].eq(1).all()
    res = nested_cv(LNMLogisticRegression(penalty="l2"), table, y, stacked=nf,
                    features=["age", "slide_lnm_score", "slide_missing"])
    assert res.predictions["prediction"].notna().all() and len(res.predictions) == len(ids)
