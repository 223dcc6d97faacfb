"""Slide SHAP onto tiles, OTC flags and reports on a synthetic cohort with planted truth."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lnmkit.exceptions import ExplainError, ReportPrivacyError  # noqa: E402
from lnmkit.explain import explain, modality_shap, otc_flags, tile_shap  # noqa: E402
from lnmkit.report import ReportContext, check_privacy, cohort_report, patient_report  # noqa: E402

PN_TERMS = {"ct_stage_num": (0.7, 2.5), "lvi": (1.1, 0.0), "grade_g3": (0.5, 0.0), "log_cea": (0.3, 1.0986),
            "morph_score": (1.2, 0.0), "max_short_axis_mm": (0.35, 8.0)}


def _build_run(cohort_dir, root, n_splits, tile_size=None):
    """Features, MIL cross-fit, fusion table, an LNM and a Cox model on a synthetic cohort."""
    from lnmkit.cohort import Cohort
    from lnmkit.features import extract
    from lnmkit.fusion import build_fusion_table
    from lnmkit.mil import MILClassifier, cross_fit, load_bags
    from lnmkit.models import CoxPH, LNMLogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = Cohort.from_dir(cohort_dir)
        fs = extract(cohort, root / "features", tile_size=tile_size, progress=False)
        bags = load_bags(fs, cohort, progress=False)
        cf = cross_fit(bags, cohort.outcomes, n_splits=n_splits, random_state=0, progress=False,
                       estimator=MILClassifier(random_state=0))
        table = build_fusion_table(cohort, slide=cf, radiology=True)
    frame = table.frame
    cols = [c for c in ("ct_stage", "lvi", "grade", "cea_ng_ml", "rad_short_axis_max_mm", "slide_lnm_score",
                        "slide_otc_score") if c in frame.columns]
    y = (cohort.outcomes.loc[frame.index, "pn_status"] == "pN+").astype(int)
    lnm = LNMLogisticRegression(penalty="l2", C=0.5).fit(frame[cols], y)
    scols = ["ct_stage", "slide_lnm_score"]
    ok = frame[scols].notna().all(axis=1)
    surv = CoxPH(penalizer=0.1).fit(frame.loc[ok, scols], cohort.survival("os", patients=frame.index[ok]))
    truth = pd.read_csv(Path(cohort_dir) / "truth" / "patients.csv", dtype={"patient_id": str}).set_index(
        "patient_id")
    return {"cohort": cohort, "cohort_dir": Path(cohort_dir), "fs": fs, "cf": cf, "table": table, "cols": cols,
            "lnm": lnm, "surv": surv, "truth": truth, "root": root}


@pytest.fixture(scope="module")
def run(synthetic_cohort_dir, tmp_path_factory):
    """The session's 12-patient synthetic cohort with a 3-fold MIL cross-fit, fusion table and two models."""
    return _build_run(synthetic_cohort_dir, tmp_path_factory.mktemp("explain_run"), n_splits=3)


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """A 40-patient cohort with 4096-px slides (the demo's size) and a 5-fold MIL cross-fit."""
    from lnmkit.synth import make_cohort

    root = tmp_path_factory.mktemp("explain_big")
    cohort_dir = make_cohort(root / "cohort", n_patients=40, seed=5, slide_size=4096, progress=False)
    # 224-px tiles: at the stain-texture default of 160 px the shares localise at 0.62 here (attention
    # 0.91): the softmax pooling's exact split goes to the top tiles, not to every tumour tile (docs/explain.md)
    return _build_run(cohort_dir, root, n_splits=5, tile_size=224)


@pytest.fixture(scope="module")
def lnm_explanation(run):
    return explain(run["lnm"], run["table"].frame[run["cols"]])


# ------------------------------------------------------------------ tile shares
def test_tile_shares_sum_to_the_slide_shap_value(run, lnm_explanation):
    ts = tile_shap(lnm_explanation, run["cf"].attention, ["slide_lnm_score", "slide_otc_score"])
    sums = ts.table.groupby("patient_id")["share"].sum()
    j = [list(lnm_explanation.feature_names).index(f) for f in ("slide_lnm_score", "slide_otc_score")]
    phi = pd.Series(lnm_explanation.values[:, j].sum(axis=1), index=lnm_explanation.instance_names)
    np.testing.assert_allclose(sums.to_numpy(), phi.loc[sums.index].to_numpy(), atol=1e-10)
    for f in ("slide_lnm_score", "slide_otc_score"):
        per = ts.table.groupby("patient_id")[f"share_{f}"].sum()
        np.testing.assert_allclose(per, ts.patients.loc[per.index, f"shap_{f}"], atol=1e-10)
    assert set(ts.patients["method_slide_lnm_score"]) <= {"rescale", "attention", "none"}
    # the tile contributions reproduce the slide logit up to one bias per fold model
    att = run["cf"].attention
    logit = np.log(run["cf"].oof["lnm_score"]) - np.log1p(-run["cf"].oof["lnm_score"])
    bias = logit - att.groupby("patient_id")["contribution_lnm"].sum().loc[logit.index]
    spread = bias.groupby(run["cf"].oof["fold"]).agg(lambda b: b.max() - b.min())
    assert spread.max() < 1e-3
    assert isinstance(ts.plot(), plt.Figure) and isinstance(ts.plot(patient_id=sums.index[0]), plt.Figure)
    plt.close("all")


def test_proportional_shares_also_sum_exactly(run, lnm_explanation):
    ts = tile_shap(lnm_explanation, run["cf"].attention, "slide_lnm_score", method="proportional")
    sums = ts.table.groupby("patient_id")["share"].sum()
    np.testing.assert_allclose(sums, ts.patients.loc[sums.index, "shap_slide"], atol=1e-10)


def test_tile_shap_errors(run, lnm_explanation):
    with pytest.raises(ExplainError, match="not in the explanation"):
        tile_shap(lnm_explanation, run["cf"].attention, "slide_risk_score")
    with pytest.raises(ExplainError, match="no 'contribution_survival'"):
        tile_shap(lnm_explanation, run["cf"].attention, "slide_lnm_score", task="survival")
    with pytest.raises(ValueError, match="2-D"):
        tile_shap(lnm_explanation[0], run["cf"].attention)


@pytest.mark.slow
def test_synthetic_slide_modality_and_tile_localisation(big_run):
    """Patients whose planted morphology drives their risk: slide evidence dominates, tiles hit the tumour."""
    from lnmkit.synth import load_planted_mask

    run = big_run
    lnm_explanation = explain(run["lnm"], run["table"].frame[run["cols"]])
    truth = run["truth"]
    truth = truth.assign(log_cea=np.log(truth["cea_ng_ml"]))
    terms = pd.DataFrame({k: c * (truth[k] - m) for k, (c, m) in PN_TERMS.items()})
    morph_driven = terms.abs().idxmax(axis=1).eq("morph_score")
    morph_driven = morph_driven[morph_driven].index.intersection(lnm_explanation.instance_names)
    print(f"{len(morph_driven)} morphology-driven patients")
    assert len(morph_driven) >= 5
    mod = modality_shap(lnm_explanation, run["table"])
    dominant = mod.dominant().loc[morph_driven]
    share_slide = mod.shares()["slide"]
    # for these patients the slide modality carries the largest share ...
    print("dominant modality:", dominant.value_counts().to_dict(), "slide share", share_slide.loc[morph_driven].mean(),
          share_slide.drop(morph_driven).mean())
    assert (dominant == "slide").mean() >= 0.6
    ts = tile_shap(lnm_explanation, run["cf"].attention, ["slide_lnm_score"])
    labels = {}
    for sid, g in ts.table.groupby("slide_id"):
        size = run["fs"].bag(sid).attrs["tile_size_level0"]
        labels[sid] = load_planted_mask(run["cohort_dir"], sid).tile_labels(g[["x", "y"]].to_numpy(), size)
    loc = ts.localisation(labels, patients=list(morph_driven))
    print(f"tile-share localisation AUC (morphology-driven patients): {loc.auc:.3f}")
    assert loc.auc > 0.7


# ------------------------------------------------------------------ OTC
def test_otc_flags_and_logrank_against_scikit_survival(run):
    from sksurv.compare import compare_survival

    cohort, cf = run["cohort"], run["cf"]
    flags = otc_flags(cf.oof, cohort.outcomes, cf.attention, threshold=0.3)
    pn0 = cohort.outcomes.loc[cf.oof.index, "pn_status"].eq("pN0")
    assert set(flags.table.index) == set(pn0[pn0].index)
    assert flags.table["flagged"].equals(flags.table["otc_score"] >= 0.3)
    ev = flags.evidence
    assert set(ev["patient_id"]) <= set(flags.flagged)
    assert (ev.groupby("patient_id")["rank"].max() <= 8).all()
    if flags.logrank:
        t = flags.table
        y = np.array(list(zip(t["event"].astype(bool), t["time"])), dtype=[("event", bool), ("time", float)])
        chisq, p = compare_survival(y, t["flagged"].to_numpy())
        # lifelines and scikit-survival implement the log-rank test independently
        assert flags.logrank["statistic"] == pytest.approx(chisq, rel=1e-6)
        assert flags.logrank["p"] == pytest.approx(p, rel=1e-6)
    assert isinstance(flags.plot(), plt.Figure)
    plt.close("all")
    assert "pN0 patients flagged" in repr(flags)


# ------------------------------------------------------------------ reports
@pytest.fixture(scope="module")
def context(run):
    return ReportContext({"lnm": run["lnm"], "survival": run["surv"]}, run["table"], outcomes=run["cohort"],
                         crossfit=run["cf"], tile_size_level0=run["fs"], horizons=[24, 48])


def _secrets(run):
    truth = __import__("lnmkit.synth", fromlist=["load_truth"]).load_truth(run["cohort_dir"])
    names = [s for s in truth["fake_names"] + truth["fake_mrns"] if s]
    slides = run["cohort"].slides
    return names, [str(p) for p in slides["path"]] + [Path(p).name for p in slides["path"]] + list(slides.index)


def test_patient_report_sections_and_privacy(run, context, tmp_path):
    pid = context.attention["patient_id"].iloc[0]
    rep = context.patient_report(pid)
    keys = [s.key for s in rep.sections]
    assert keys[0] == "summary" and "shap_lnm" in keys and "survival" in keys and "slides" in keys
    assert keys[-1] == "provenance"
    assert 0 <= rep.summary["lnm_probability"] <= 1
    assert rep.summary["risk_group"] in {"low", "intermediate", "high"}
    assert rep.images  # heatmaps, montages, waterfall, curves
    slides = next(s for s in rep.sections if s.key == "slides")
    n_slides = context.attention.loc[context.attention["patient_id"] == pid, "slide_id"].nunique()
    # per slide: the tile shares, the attention map beside them, and the montage
    assert set(slides.images) == {f"{kind}_{n}" for kind in ("heatmap", "attention", "tiles")
                                  for n in range(1, n_slides + 1)}
    assert 'alt="tile shares, slide 1' in slides.body and 'alt="attention, slide 1' in slides.body
    path = rep.save(tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text)
    names, slide_strings = _secrets(run)
    for s in names + slide_strings:
        assert s not in text, s
    pngs = rep.save_pngs(tmp_path / "png")
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert rep._repr_html_().startswith("<div")
    assert "PatientReport" in repr(rep)


def test_patient_report_function_and_errors(run):
    rep = patient_report({"lnm": run["lnm"]}, run["table"], run["table"].frame.index[1])
    assert [s.key for s in rep.sections][0] == "summary"
    with pytest.raises(KeyError, match="not in the fusion table"):
        patient_report({"lnm": run["lnm"]}, run["table"], "NOPE")
    with pytest.raises(ValueError, match="'lnm' and/or 'survival'"):
        patient_report({"model": run["lnm"]}, run["table"], "P001")


def test_privacy_check_refuses_paths_and_external_requests():
    check_privacy('<img src="data:image/png;base64,QUJD">', ["slides/P001-A.svs"])
    with pytest.raises(ReportPrivacyError, match="external"):
        check_privacy('<img src="https://example.org/x.png">')
    with pytest.raises(ReportPrivacyError, match="script"):
        check_privacy("<script>alert(1)</script>")
    with pytest.raises(ReportPrivacyError, match="slide path"):
        check_privacy("<p>/data/slides/P001-A.svs</p>", ["/data/slides/P001-A.svs"])
    # base64 image data never triggers a false positive
    check_privacy('<img src="data:image/png;base64,QUJDREVG">', ["ABCDEF"])


def test_cohort_report_checklist(run, tmp_path):
    from lnmkit.evaluation import evaluate_binary

    cf = run["cf"]
    y = (run["cohort"].outcomes.loc[cf.oof.index, "pn_status"] == "pN+").astype(int)
    perf = {"MIL slide score (out-of-fold)": evaluate_binary(y, cf.oof["lnm_score"])}
    rep = cohort_report({"lnm": run["lnm"], "survival": run["surv"]}, run["table"], run["cohort"],
                        performance=perf, crossfit=cf, internal_validation="3-fold cross-fitting by patient")
    c = rep.checklist
    assert c.loc["10", "status"] == "filled" and f"{len(run['table'].frame)} patients" in c.loc["10", "content"]
    assert c.loc["11", "status"] == "filled" and c.loc["24", "status"] == "filled"
    assert c.loc["17", "status"] == "to do"
    assert "17: Ethical approval" in rep.todo
    text = rep.save(tmp_path / "cohort.html").read_text(encoding="utf-8")
    names, slide_strings = _secrets(run)
    for s in names + slide_strings:
        assert s not in text
    assert "TRIPOD+AI" in text and "Performance (out-of-fold)" in text


# ------------------------------------------------------------------ headless Chromium
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed")
def test_report_renders_in_headless_chromium_without_network(context, tmp_path):
    """A screenshot is taken; every image decodes and the page fetches nothing (resource timing is empty)."""
    import os

    pid = context.attention["patient_id"].iloc[0]
    html_path = context.patient_report(pid).save(tmp_path / "report.html")
    text = html_path.read_text(encoding="utf-8")
    n_img = text.count("<img ")
    # The report's Content-Security-Policy forbids scripts and any non-data resource; the probe copy drops the
    # policy and adds a script that counts decoded images and the resources the page requested.
    assert "default-src 'none'" in text
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
              "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}"
              "var res=performance.getEntriesByType('resource').filter(function(e){"
              "return e.name.indexOf('data:')!==0;}).length;"
              "document.title='LOADED '+ok+' OF '+im.length+' REQUESTS '+res;});</script>")
    probe.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
                     .replace("</body>", script + "</body>"), encoding="utf-8")
    args = [_chromium(), "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1280,2000"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    shot = tmp_path / "out.png"
    subprocess.run(args + [f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, timeout=180, check=False)
    assert shot.is_file() and shot.read_bytes()[:4] == b"\x89PNG"
    dom = subprocess.run(args + [f"--user-data-dir={tmp_path / 'profile2'}", "--virtual-time-budget=10000",
                                 "--dump-dom", probe.as_uri()],
                         capture_output=True, timeout=180, check=False, text=True).stdout
    m = re.search(r"<title>LOADED (\d+) OF (\d+) REQUESTS (\d+)</title>", dom)
    assert m, dom[:400]
    assert int(m.group(1)) == int(m.group(2)) == n_img > 0
    assert int(m.group(3)) == 0
    # the probe does see a request when there is one (control page with an external image)
    control = tmp_path / "control.html"
    control.write_text('<html><head><title>x</title></head><body><img src="http://127.0.0.1:9/x.png">'
                       + script + "</body></html>", encoding="utf-8")
    dom = subprocess.run(args + [f"--user-data-dir={tmp_path / 'profile3'}", "--virtual-time-budget=10000",
                                 "--dump-dom", control.as_uri()],
                         capture_output=True, timeout=180, check=False, text=True).stdout
    assert "LOADED 0 OF 1 REQUESTS 1" in dom


def test_cli_report_writes_patient_and_cohort_reports(run, tmp_path):
    from typer.testing import CliRunner

    from lnmkit.cli import app

    table_path = run["table"].save(tmp_path / "fusion.csv")
    model_path = tmp_path / "lnm.json"
    run["lnm"].save(model_path)
    survival_path = run["surv"].save(tmp_path / "cox.json")
    mil_dir = run["cf"].save(tmp_path / "mil")
    pid = run["cf"].oof.index[0]
    res = CliRunner().invoke(app, ["report", str(run["cohort_dir"]), "--table", str(table_path), "--lnm-model",
                                   str(model_path), "--survival-model", str(survival_path), "--mil", str(mil_dir),
                                   "--features", str(run["fs"].root), "--patient", pid,
                                   "--out", str(tmp_path / "reports")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "reports" / f"{pid}.html").read_text(encoding="utf-8")
    assert "Slide evidence" in text and text.count("<img ") >= 3
    assert "Predicted survival" in text
    assert (tmp_path / "reports" / "cohort.html").is_file()
    index = pd.read_csv(tmp_path / "reports" / "index.csv", dtype={"patient_id": str})
    assert index["patient_id"].tolist() == [pid]
    names, slide_strings = _secrets(run)
    for s in names + slide_strings:
        assert s not in text
    wrong = CliRunner().invoke(app, ["report", str(run["cohort_dir"]), "--table", str(table_path), "--lnm-model",
                                     str(model_path), "--survival-model", str(model_path),
                                     "--out", str(tmp_path / "r3")])
    assert wrong.exit_code == 2 and "lnm.json: holds a LNMLogisticRegression, not a survival model" in wrong.output
    bad = CliRunner().invoke(app, ["report", str(run["cohort_dir"]), "--table", str(tmp_path / "missing.csv"),
                                   "--lnm-model", str(model_path), "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_a_slide_named_after_its_patient_is_not_refused():
    from lnmkit.report import PatientReport
    from lnmkit.report._html import Section, forbidden_strings

    rep = PatientReport("P001", [Section("summary", "Summary", "<p>P001</p>")], {},
                        forbidden=forbidden_strings({"P001": "/data/slides/P001.svs", "P002-A": None}))
    assert "P001" in rep.to_html()
    bad = PatientReport("P001", [Section("summary", "Summary", "<p>P002-A</p>")], {}, forbidden=rep.forbidden)
    with pytest.raises(ReportPrivacyError, match="P002-A"):
        bad.to_html()
