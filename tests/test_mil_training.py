"""MILClassifier and cross_fit: reproducibility, persistence, leakage, fold hygiene."""

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from lnmkit.exceptions import MILInputWarning, NotFittedError
from lnmkit.mil._slide_norm import standardise_slides
from lnmkit.mil import (
    CrossFitResult,
    MILClassifier,
    PatientBag,
    cross_fit,
    length_bucketed_batches,
    load_bags,
)

D = 8
FAST = dict(hidden=16, lr=3e-3, max_epochs=12, batch_size=8, patience=4)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Tiny networks: a second intra-op thread only adds synchronisation cost on busy CI cores.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cohort(n=40, seed=0, signal=2.0):
    """Bags with planted positive tiles in pN+ patients; some patients have two slides."""
    rng = np.random.default_rng(seed)
    bags, rows = {}, []
    for i in range(n):
        pid = f"P{i:03d}"
        pos = i % 2 == 0
        n_slides = 2 if i % 5 == 0 else 1
        feats, coords, sidx = [], [], []
        for s in range(n_slides):
            k = int(rng.integers(15, 60))
            f = rng.normal(size=(k, D)).astype(np.float32)
            if pos:
                hot = rng.choice(k, max(2, k // 6), replace=False)
                f[hot, :3] += signal
            feats.append(f)
            coords.append(np.stack([np.arange(k) * 256, np.full(k, s * 256)], 1))
            sidx.append(np.full(k, s))
        sids = tuple(f"{pid}-S{s}" for s in range(n_slides))
        bags[pid] = PatientBag(pid, np.concatenate(feats), np.concatenate(coords), np.concatenate(sidx), sids,
                               tuple({"tile_size_level0": 256} for _ in sids))
        otc = np.nan if pos else float(rng.integers(0, 2))
        rows.append((pid, "pN+" if pos else "pN0", otc, float(rng.uniform(2, 80)), int(rng.integers(0, 2))))
    y = pd.DataFrame(rows, columns=["patient_id", "pn_status", "otc", "os_months", "os_event"])
    return bags, y.set_index("patient_id")


@pytest.fixture(scope="module")
def cohort():
    return _cohort()


@pytest.fixture(scope="module")
def fitted(cohort):
    bags, y = cohort
    return MILClassifier(**FAST).fit(bags, y)


def test_predict_frame_layout(cohort, fitted):
    bags, y = cohort
    pred = fitted.predict(bags)
    assert pred.index.name == "patient_id" and list(pred.index) == list(bags)
    assert list(pred.columns[:2]) == ["lnm_score", "otc_score"]
    assert [c for c in pred.columns if c.startswith("emb_")] == [f"emb_{i}" for i in range(16)]
    assert pred[["lnm_score", "otc_score"]].stack().between(0, 1).all()
    assert roc_auc_score(y.pn_status == "pN+", pred.lnm_score) > 0.9


def test_attention_maps_back_to_slides(cohort, fitted):
    bags, _ = cohort
    tiles = fitted.predict_attention(bags)
    assert len(tiles) == sum(b.n_tiles for b in bags.values())
    two = bags["P000"]
    sub = tiles[tiles.patient_id == "P000"]
    assert sorted(sub.slide_id.unique()) == list(two.slide_ids)
    np.testing.assert_array_equal(sub[["x", "y"]].to_numpy(), two.coords)
    np.testing.assert_allclose(sub.attention.sum(), 1.0, atol=1e-5)  # normalised over the patient
    for _, g in tiles.groupby("slide_id"):
        assert g.attention_pct.between(0, 100).all()
        assert g.attention_pct.rank().corr(g.attention.rank()) == pytest.approx(1.0)


def test_same_seed_same_predictions_and_other_seed_differs(cohort):
    bags, y = cohort
    a = MILClassifier(**FAST, random_state=3).fit(bags, y).predict(bags)
    b = MILClassifier(**FAST, random_state=3).fit(bags, y).predict(bags)
    c = MILClassifier(**FAST, random_state=4).fit(bags, y).predict(bags)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not np.allclose(a.lnm_score, c.lnm_score)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_networks_trained_side_by_side_equal_those_trained_in_turn(cohort, dropout):
    import torch

    bags, y = cohort
    # float32: on a CPU with bfloat16 units the default precision would train them in turn anyway
    params = dict(FAST, max_epochs=4, n_init=3, dropout=dropout, random_state=5, precision="fp32")
    in_turn = MILClassifier(**params, n_jobs=1).fit(bags, y)
    # global draws between the threads' dropout draws must not reach any network
    torch.manual_seed(0)
    side_by_side = MILClassifier(**params, n_jobs=3).fit(bags, y)
    np.testing.assert_array_equal(side_by_side.init_losses_, in_turn.init_losses_)
    pd.testing.assert_frame_equal(side_by_side.predict(bags), in_turn.predict(bags), check_exact=True)
    assert len(set(in_turn.init_losses_)) == 3


def test_bfloat16_on_a_cpu_trains_the_networks_in_turn(cohort, monkeypatch):
    """oneDNN's bfloat16 products run side by side vary with thread timing: one thread there."""
    from concurrent import futures

    from lnmkit.mil import _estimator

    pools = []

    class CountingPool(futures.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_estimator, "ThreadPoolExecutor", CountingPool)
    bags, y = cohort
    params = dict(FAST, max_epochs=2, n_init=3, random_state=5, n_jobs=3)
    bf16 = MILClassifier(**params, precision="bf16").fit(bags, y)
    assert pools == [] and len(bf16.init_losses_) == 3
    MILClassifier(**params, precision="fp32").fit(bags, y)
    assert pools == [(3,)]


def test_a_network_that_fails_beside_others_stops_the_fit(cohort, monkeypatch):
    from lnmkit.mil import _estimator

    bags, y = cohort
    trained = []
    real = _estimator.MILClassifier._epoch

    def failing(self, run, data):
        trained.append(run)
        if len(trained) == 2:
            raise RuntimeError("out of memory")
        real(self, run, data)

    monkeypatch.setattr(_estimator.MILClassifier, "_epoch", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        MILClassifier(**dict(FAST, max_epochs=500), n_init=2, n_jobs=2, precision="fp32").fit(bags, y)
    # the other network stopped at its next epoch instead of training to max_epochs
    assert len(trained) < 100


def test_fit_does_not_touch_global_torch_rng(cohort):
    import torch

    bags, y = cohort
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MILClassifier(**dict(FAST, max_epochs=2)).fit(bags, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_save_load_round_trip(tmp_path, cohort, fitted):
    bags, _ = cohort
    fitted.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = MILClassifier.load(tmp_path / "m")
    pd.testing.assert_frame_equal(fitted.predict(bags), loaded.predict(bags), check_exact=True)
    pd.testing.assert_frame_equal(fitted.predict_attention(bags), loaded.predict_attention(bags), check_exact=True)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.feature_mean_, fitted.feature_mean_)
    np.testing.assert_array_equal(loaded.init_losses_, fitted.init_losses_)
    assert loaded.init_losses_.shape == (fitted.n_init,)


def test_otc_labels_of_node_positive_patients_change_nothing(cohort):
    bags, y = cohort
    y2 = y.copy()
    pos = y2.pn_status == "pN+"
    y2.loc[pos, "otc"] = np.where(np.arange(pos.sum()) % 2, 1.0, 0.0)
    a = MILClassifier(**FAST).fit(bags, y).predict(bags)
    b = MILClassifier(**FAST).fit(bags, y2).predict(bags)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_standardisation_is_fitted_on_training_bags_only(cohort):
    bags, y = cohort
    train = dict(list(bags.items())[:20])
    clf = MILClassifier(**dict(FAST, max_epochs=1)).fit(train, y)
    allf = np.concatenate([standardise_slides(b.features, b.slide_index) for b in train.values()])
    np.testing.assert_allclose(clf.feature_mean_, allf.mean(0), atol=1e-5)
    np.testing.assert_allclose(clf.feature_std_, allf.std(0), rtol=1e-4)


def test_cross_fit_folds_split_by_patient_and_scores_are_out_of_fold(cohort):
    bags, y = cohort
    res = cross_fit(bags, y, n_splits=4, estimator=MILClassifier(**FAST), progress=False)
    assert list(res.oof.index) == list(bags) and res.oof["fold"].between(0, 3).all()
    for k, model in enumerate(res.models):
        held_out = set(res.oof.index[res.oof.fold == k])
        seen = set(model.train_patients_) | set(model.val_patients_)
        assert held_out and not (held_out & seen)
        assert held_out | seen == set(bags)
    # every tile's attention comes from its patient's own fold; a patient's slides share one fold
    per_patient = res.attention.groupby("patient_id").fold.nunique()
    assert (per_patient == 1).all()
    assert (res.attention.groupby("patient_id").fold.first() == res.oof.fold).all()
    # folds are stratified by pN status
    share = y.loc[res.oof.index].pn_status.eq("pN+").groupby(res.oof.fold).mean()
    assert share.between(0.3, 0.7).all()
    insample = res.models[0].predict(bags)
    assert not np.allclose(insample.lnm_score, res.oof.lnm_score)
    table = res.metrics()
    assert table.loc["lnm", "auc"] > 0.85
    assert {"auc_lower_95", "auc_upper_95"} <= set(table.columns)


def test_noise_labels_give_chance_out_of_fold_but_high_in_sample():
    bags, y = _cohort(n=40, seed=5, signal=0.0)
    y = y.copy()
    y["pn_status"] = np.random.default_rng(11).permutation(y.pn_status.to_numpy())
    y["otc"] = np.where(y.pn_status == "pN0", y["otc"].fillna(0), np.nan)
    # Without per-slide standardisation, bag-wide feature shifts let a network memorise its bags.
    memoriser = MILClassifier(arch="abmil", hidden=64, lr=5e-3, max_epochs=20, val_fraction=0.0, dropout=0.0, batch_size=8,
                              slide_normalisation=None)
    res = cross_fit(bags, y, n_splits=5, estimator=memoriser, progress=False)
    labels = y.loc[res.oof.index].pn_status == "pN+"
    oof_auc = roc_auc_score(labels, res.oof.lnm_score)
    in_auc = roc_auc_score(labels, clone(memoriser).fit(bags, y).predict(bags).lnm_score)
    assert in_auc > 0.9
    assert 0.25 < oof_auc < 0.75


def test_cross_fit_groups_keep_groups_together(cohort):
    bags, y = cohort
    centre = pd.Series({p: f"C{int(p[1:]) % 8}" for p in bags})
    res = cross_fit(bags, y, n_splits=4, groups=centre, estimator=MILClassifier(**dict(FAST, max_epochs=2)),
                    progress=False)
    assert (res.oof.fold.groupby(centre).nunique() == 1).all()


def test_crossfit_result_save_load_and_predict(tmp_path, cohort):
    bags, y = cohort
    res = cross_fit(bags, y, n_splits=3, estimator=MILClassifier(**dict(FAST, max_epochs=3)), progress=False)
    res.save(tmp_path / "cf")
    back = CrossFitResult.load(tmp_path / "cf")
    pd.testing.assert_frame_equal(res.oof, back.oof, check_exact=False, rtol=1e-12)
    new = dict(list(bags.items())[:5])
    pd.testing.assert_frame_equal(res.predict(new), back.predict(new), check_exact=True)
    mean = sum(m.predict(new).lnm_score for m in res.models) / 3
    np.testing.assert_allclose(res.predict(new).lnm_score, mean)
    assert "CrossFitResult" in repr(back) and "<table" in back._repr_html_()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = res.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    plt.close(fig)


def test_survival_head_trains(cohort):
    bags, y = cohort
    clf = MILClassifier(tasks=("lnm", "survival"), **dict(FAST, max_epochs=3)).fit(bags, y)
    pred = clf.predict(bags)
    assert "risk_score" in pred and "otc_score" not in pred
    assert np.isfinite(pred.risk_score).all()


@pytest.mark.parametrize("arch", ["gated-abmil", "clam-sb", "mean", "max"])
def test_every_arch_fits_with_subsampled_bags(cohort, arch):
    bags, y = cohort
    clf = MILClassifier(arch, **dict(FAST, max_epochs=2, max_tiles=10)).fit(bags, y)
    assert len(clf.history_) == 2
    assert np.isfinite(clf.predict(bags).lnm_score).all()


def test_length_bucketed_batches_cover_all_and_never_leave_a_single_bag():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 5000, size=33)
    batches = length_bucketed_batches(lengths, 16, rng)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(33))
    assert min(len(b) for b in batches) >= 2
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_batches = np.array_split(rng.permutation(33), len(batches))
    padded_random = sum(len(b) * lengths[b].max() for b in random_batches)
    assert padded < padded_random


def test_load_bags_concatenates_a_patients_slides():
    rng = np.random.default_rng(0)

    def bag(sid, pid, n):
        return SimpleNamespace(features=rng.normal(size=(n, 4)).astype(np.float32),
                               coords=np.arange(2 * n).reshape(n, 2),
                               attrs={"slide_id": sid, "patient_id": pid, "tile_size_level0": 448})

    files = {"S1": bag("S1", "A", 3), "S2": bag("S2", "A", 5), "S3": bag("S3", "B", 4)}
    fs = SimpleNamespace(slide_ids=["S2", "S1", "S3"], bag=files.__getitem__,
                         manifest=pd.DataFrame({"patient_id": ["A", "A", "B"]}, index=["S1", "S2", "S3"]))
    out = load_bags(fs, progress=False)
    assert list(out) == ["A", "B"]
    a = out["A"]
    assert a.slide_ids == ("S1", "S2") and a.n_tiles == 8
    np.testing.assert_array_equal(a.slide_index, [0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(a.features[3:], files["S2"].features)
    assert a.slide_attrs[1]["tile_size_level0"] == 448

    # The cohort's slide table decides: S3 is not listed (skipped), S2 belongs to patient B there.
    cohort = SimpleNamespace(slides=pd.DataFrame({"patient_id": ["A", "B"]}, index=["S1", "S2"]))
    with pytest.warns(MILInputWarning) as caught:
        mapped = load_bags(fs, cohort, progress=False)
    (message,) = [str(w.message) for w in caught]
    assert "not in the cohort's slides.csv: S3" in message and "S2 (A in its feature file, B in the cohort)" in message
    assert {p: b.slide_ids for p, b in mapped.items()} == {"A": ("S1",), "B": ("S2",)}
    # A cohort without a slide table (tables only) leaves the feature files' patients.
    tables_only = SimpleNamespace(slides=pd.DataFrame({"patient_id": []}, index=pd.Index([], name="slide_id")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(load_bags(fs, tables_only, progress=False)) == ["A", "B"]


def test_input_errors(cohort):
    bags, y = cohort
    with pytest.raises(ValueError, match="arch must be one of"):
        MILClassifier("transformer").fit(bags, y)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        MILClassifier(batch_size=1).fit(bags, y)
    with pytest.raises(ValueError, match="have no row in y"):
        MILClassifier().fit(bags, y.iloc[1:])
    bad = y.copy()
    bad.loc["P003", "pn_status"] = "N1"
    with pytest.raises(ValueError, match="'P003'"):
        MILClassifier().fit(bags, bad)
    with pytest.raises(ValueError, match="non-finite"):
        MILClassifier().fit({"a": np.full((3, D), np.nan), "b": np.ones((3, D))}, y)
    with pytest.raises(NotFittedError, match="call fit"):
        MILClassifier().predict(bags)


def _fake_feature_run(cohort_dir, run_dir, dim=6, seed=0):
    """Feature bags for every slide of a tables-only cohort: planted signal in pN+ patients."""
    import json as _json

    from lnmkit.features import FeatureBag, write_bag

    rng = np.random.default_rng(seed)
    # a tables-only synthetic cohort keeps its slide plan in truth/; list those slides as the cohort's
    slides = pd.read_csv(cohort_dir / "truth" / "slides.csv", dtype=str).assign(stain="H&E")
    slides[["slide_id", "patient_id", "path", "mpp", "stain", "block"]].to_csv(cohort_dir / "slides.csv",
                                                                                 index=False)
    outcomes = pd.read_csv(cohort_dir / "outcomes.csv", dtype={"patient_id": str}).set_index("patient_id")
    rows = []
    for sid, pid, rel in zip(slides.slide_id, slides.patient_id, slides.path):
        (cohort_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (cohort_dir / rel).touch()  # the cohort loader checks that slide files exist; MIL never reads them
        n = int(rng.integers(12, 40))
        feats = rng.normal(size=(n, dim)).astype(np.float32)
        if outcomes.loc[pid, "pn_status"] == "pN+":
            feats[: n // 4, :2] += 2.5
        coords = np.stack([np.arange(n) * 448, np.zeros(n, int)], 1).astype(np.int64)
        attrs = {"slide_id": sid, "patient_id": pid, "tile_size_level0": 448, "mpp": 0.5, "tile_size": 224,
                 "encoder": "test", "encoder_version": "0"}
        write_bag(run_dir / "h5" / f"{sid}.h5", FeatureBag(feats, coords, attrs))
        rows.append({"slide_id": sid, "patient_id": pid, "status": "ok", "n_tiles": n, "seconds": 0.0, "error": ""})
    pd.DataFrame(rows).to_csv(run_dir / "manifest.csv", index=False)
    (run_dir / "params.json").write_text(_json.dumps({"encoder": {"name": "test", "dim": dim}}))


def test_cli_mil_writes_every_output(tmp_path):
    import json as _json

    from typer.testing import CliRunner

    from lnmkit.cli import app
    from lnmkit.synth import make_cohort

    cohort_dir = make_cohort(tmp_path / "cohort", n_patients=24, seed=1, slides=False, progress=False)
    _fake_feature_run(cohort_dir, tmp_path / "features" / "run")
    # The slide table names slide files that are not on this machine: MIL needs only the bags.
    plan = pd.read_csv(cohort_dir / "truth" / "slides.csv", dtype=str)
    plan[["slide_id", "patient_id", "path", "mpp"]].to_csv(cohort_dir / "slides.csv", index=False)
    result = CliRunner().invoke(app, ["mil", str(tmp_path / "features"), "--cohort", str(cohort_dir),
                                      "--out", str(tmp_path / "out"), "--arch", "gated-abmil",
                                      "--n-splits", "3", "--max-epochs", "4", "--max-tiles", "64",
                                      "--averaging-epochs", "1.5", "--val-fraction", "0.25",
                                      "--weight-decay", "0.01", "--n-init", "2"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    oof = pd.read_csv(out / "oof_scores.csv", dtype={"patient_id": str})
    assert list(oof.columns[:3]) == ["patient_id", "lnm_score", "otc_score"] and len(oof) == 24
    metrics = _json.loads((out / "metrics.json").read_text())
    assert metrics["arch"] == "gated-abmil" and 0 <= metrics["auc"]["lnm"]["auc"] <= 1
    params = metrics["estimator_params"]
    assert (params["arch"], params["max_epochs"], params["max_tiles"], params["averaging_epochs"],
            params["val_fraction"], params["weight_decay"], params["n_init"]) == (
        "gated-abmil", 4, 64, 1.5, 0.25, 0.01, 2)
    assert "attention_localisation" not in metrics  # tables-only cohort: no planted masks
    slides = pd.read_csv(cohort_dir / "slides.csv", dtype=str)
    for sid in slides.slide_id:
        att = pd.read_csv(out / "attention" / f"{sid}.csv")
        assert list(att.columns[:4]) == ["x", "y", "attention", "attention_pct"]
    assert all((out / "models" / f"fold_{k}" / "config.json").is_file() for k in range(3))
    bad = CliRunner().invoke(app, ["mil", str(tmp_path / "nowhere"), "--cohort", str(cohort_dir),
                                   "--out", str(tmp_path / "o2")])
    assert bad.exit_code != 0 and "error" in bad.output


def test_n_threads_is_restored_after_fit_and_predict(cohort):
    import torch

    bags, y = cohort
    before = torch.get_num_threads()
    clf = MILClassifier(**dict(FAST, max_epochs=1), n_threads=2).fit(bags, y)
    assert torch.get_num_threads() == before
    clf.predict(bags)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n_threads must be a positive integer"):
        MILClassifier(n_threads=0).fit(bags, y)


def test_prediction_uses_every_tile_when_training_subsamples(cohort):
    import torch

    bags, y = cohort
    clf = MILClassifier(**dict(FAST, max_epochs=2, max_tiles=8)).fit(bags, y)
    pid = max(bags, key=lambda p: bags[p].n_tiles)
    bag = bags[pid]
    assert bag.n_tiles > 8
    x = torch.from_numpy((standardise_slides(bag.features, bag.slide_index) - clf.feature_mean_)
                         / clf.feature_std_)[None]
    with torch.no_grad():
        full = clf.model_.eval()(x, None)
    pred = clf.predict({pid: bag})
    np.testing.assert_allclose(pred.lnm_score.iloc[0], torch.sigmoid(full["logits"]["lnm"][0]), rtol=1e-5)
    tiles = clf.predict_attention({pid: bag})
    assert len(tiles) == bag.n_tiles
    np.testing.assert_allclose(tiles.attention, full["attention"][0], atol=1e-6, rtol=1e-5)
    # A tile past the first max_tiles still moves the score.
    shifted = bag.features.copy()
    shifted[-1] += 50.0
    moved = clf.predict({pid: PatientBag(pid, shifted, bag.coords, bag.slide_index, bag.slide_ids)})
    assert abs(moved.lnm_score.iloc[0] - pred.lnm_score.iloc[0]) > 1e-4


def test_max_tiles_subsampling_changes_training_but_stays_reproducible(cohort):
    bags, y = cohort
    sub = dict(FAST, max_epochs=3, max_tiles=12)
    a = MILClassifier(**sub).fit(bags, y).predict(bags)
    b = MILClassifier(**sub).fit(bags, y).predict(bags)
    full = MILClassifier(**dict(sub, max_tiles=10_000)).fit(bags, y).predict(bags)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not np.allclose(a.lnm_score, full.lnm_score)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_modes_train_and_predict_in_float32(cohort, precision):
    import torch

    bags, y = cohort
    clf = MILClassifier(**FAST, precision=precision).fit(bags, y)
    pred = clf.predict(bags)
    assert pred.dtypes.eq(np.float64).all() and np.isfinite(pred.to_numpy()).all()
    assert roc_auc_score(y.pn_status == "pN+", pred.lnm_score) > 0.9
    assert all(p.dtype == torch.float32 for p in clf.model_.parameters())


def test_precision_is_checked(cohort):
    bags, y = cohort
    with pytest.raises(ValueError, match="precision must be"):
        MILClassifier(precision="fp16").fit(bags, y)


def test_weight_average_is_the_normalised_exponential_average():
    import torch

    from lnmkit.mil._averaging import WeightAverage

    model = torch.nn.Linear(2, 1)
    average = WeightAverage(model, decay=0.5)
    with pytest.raises(RuntimeError, match="no update yet"):
        average.averaged_model()
    for value in (1.0, 2.0, 3.0):  # three optimiser steps
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        average.update()
    # weights (1 - d) d^(t - s) for s = 1..3 are 1/8, 1/4, 1/2, normalised by their sum 7/8
    expected = (1 / 8 * 1 + 1 / 4 * 2 + 1 / 2 * 3) / (7 / 8)
    shadow = average.averaged_model()
    assert shadow is not model
    for p in shadow.parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected))
    assert all(bool((p == 3.0).all()) for p in model.parameters())  # training weights untouched
    single = WeightAverage(model, decay=0.99)
    single.update()  # bias correction: one step is exactly that step's weights
    for p in single.averaged_model().parameters():
        torch.testing.assert_close(p, torch.full_like(p, 3.0))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_weight_averaging_is_the_fitted_model_and_can_be_turned_off(cohort):
    bags, y = cohort
    averaged = MILClassifier(**FAST).fit(bags, y)
    last = MILClassifier(**FAST, averaging_epochs=0).fit(bags, y)
    again = MILClassifier(**FAST).fit(bags, y)
    pd.testing.assert_frame_equal(averaged.predict(bags), again.predict(bags), check_exact=True)
    assert not np.allclose(averaged.predict(bags).lnm_score, last.predict(bags).lnm_score)
    for clf in (averaged, last):
        assert roc_auc_score(y.pn_status == "pN+", clf.predict(bags).lnm_score) > 0.9
    with pytest.raises(ValueError, match="averaging_epochs"):
        MILClassifier(averaging_epochs=-1).fit(bags, y)
