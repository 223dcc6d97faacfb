"""Synthetic clinical, radiology and outcome tables drawn from the planted models.

Every patient is first drawn completely (the truth, ``truth/patients.csv``); the
published tables are then derived from it, with missing values punched in
completely at random and some patients' radiology withheld.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lnmkit.synth._truth import CENSORING, OS_MODEL, OTC_MODEL, PN_MODEL, RECURRENCE_MODEL

__all__ = ["draw_patients", "pn_design", "clinical_table", "radiology_table", "outcomes_table", "GASTRIC_STATIONS"]

#: JGCA regional lymph node stations of the stomach, with relative frequencies of
#: imaged nodes.
GASTRIC_STATIONS = {
    "1": 8, "2": 3, "3a": 10, "3b": 8, "4sa": 3, "4sb": 5, "4d": 8, "5": 4, "6": 9, "7": 9,
    "8a": 7, "8p": 2, "9": 5, "10": 1, "11p": 4, "11d": 2, "12a": 3, "14v": 2, "16a2": 2, "16b1": 2,
}

#: Share of missing values punched into each non-required clinical column.
MISSING_RATES = {
    "tumour_site": 0.03, "ct_stage": 0.02, "grade": 0.02, "lauren_type": 0.06,
    "tumour_size_mm": 0.06, "cea_ng_ml": 0.12, "ca19_9_u_ml": 0.18, "lvi": 0.08, "pni": 0.10,
    "neoadjuvant": 0.02,
}

_SITES = ["cardia", "fundus", "body", "antrum", "pylorus", "whole", "other"]
_SITE_P = [0.15, 0.05, 0.30, 0.40, 0.05, 0.03, 0.02]
_MODALITIES = ["CT", "PET-CT", "MRI", "US"]
_MODALITY_P = [0.65, 0.20, 0.10, 0.05]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _min_counts(n):
    """Least number of pN+, OTC and plain pN0 patients guaranteed for a cohort of n."""
    return min(3, n // 4), min(2, n // 6), min(2, n // 6)


def pn_design(p):
    """Design matrix of the planted pN model from complete patient values.

    Parameters
    ----------
    p : pandas.DataFrame
        Complete patient values as drawn by :func:`draw_patients`.

    Returns
    -------
    pandas.DataFrame
        One column per coefficient of ``PN_MODEL``, centred as documented.
    """
    c = PN_MODEL["centering"]
    return pd.DataFrame({
        "ct_stage_num": p["ct_stage_num"] - c["ct_stage_num"],
        "lvi": p["lvi"].astype(float),
        "grade_g3": p["grade_g3"].astype(float),
        "log_cea": np.log(p["cea_ng_ml"]) - c["log_cea"],
        "morph_score": p["morph_score"],
        "max_short_axis_mm": p["max_short_axis_mm"] - c["max_short_axis_mm"],
        "age_decades": p["age"] / 10.0 - c["age_decades"],
        "sex_male": (p["sex"] == "M").astype(float),
    }, index=p.index)


def _linear(design, model):
    coef = pd.Series(model["coefficients"])
    return model.get("intercept", 0.0) + design[coef.index].to_numpy() @ coef.to_numpy()


def _weibull_times(rng, eta, baseline):
    u = rng.random(eta.size)
    return (-np.log(u) / (baseline["scale"] * np.exp(eta))) ** (1.0 / baseline["shape"])


def draw_patients(n_patients, rng):
    """Draw complete patient values and radiology nodes from the planted models.

    Parameters
    ----------
    n_patients : int
        Number of patients.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    patients : pandas.DataFrame
        Complete values indexed by ``patient_id``: clinical variables, latent
        ``morph_score``, ``max_short_axis_mm``, ``pn_logit``, ``pn_prob``, pN and
        OTC status, event times, censoring and derived outcomes.
    nodes : pandas.DataFrame
        Every imaged node of every patient (before any patient's radiology is withheld).
    """
    n = int(n_patients)
    width = max(3, len(str(n)))
    ids = [f"P{i + 1:0{width}d}" for i in range(n)]
    age = np.clip(np.round(rng.normal(64, 11, n)), 28, 92).astype(int)
    sex = np.where(rng.random(n) < 0.67, "M", "F")
    t_num = rng.choice([1, 2, 3, 4], size=n, p=[0.15, 0.20, 0.40, 0.25])
    morph = rng.standard_normal(n)
    grade_g3 = rng.random(n) < _sigmoid(-0.2 + 0.6 * morph)
    g4 = grade_g3 & (rng.random(n) < 0.06)
    grade = np.where(g4, "G4", np.where(grade_g3, "G3", np.where(rng.random(n) < 0.72, "G2", "G1")))
    lauren = np.where(grade_g3 & (rng.random(n) < 0.55), "diffuse",
                      rng.choice(["intestinal", "intestinal", "intestinal", "mixed", "indeterminate"], n))
    size = np.round(np.exp(np.log(28) + 0.35 * (t_num - 2.5) + rng.normal(0, 0.4, n)), 1)
    cea = np.round(np.exp(np.log(3.0) + 0.2 * (t_num - 2.5) + rng.normal(0, 0.8, n)), 2)
    ca199 = np.round(np.exp(np.log(15.0) + 0.2 * (t_num - 2.5) + rng.normal(0, 1.0, n)), 1)
    lvi = (rng.random(n) < _sigmoid(-0.4 + 0.6 * (t_num - 2.5) + 0.4 * morph)).astype(int)
    pni = (rng.random(n) < _sigmoid(-0.9 + 0.5 * (t_num - 2.5))).astype(int)
    neo = (rng.random(n) < 0.2).astype(int)
    site = rng.choice(_SITES, size=n, p=_SITE_P)

    nodes = _draw_nodes(rng, ids, t_num)
    max_short = nodes.groupby("patient_id")["short_axis_mm"].max().reindex(ids).to_numpy()
    p = pd.DataFrame({
        "age": age, "sex": sex, "tumour_site": site, "ct_stage_num": t_num, "grade": grade,
        "grade_g3": grade_g3.astype(int), "lauren_type": lauren, "tumour_size_mm": size,
        "cea_ng_ml": cea, "ca19_9_u_ml": ca199, "lvi": lvi, "pni": pni, "neoadjuvant": neo,
        "morph_score": morph, "max_short_axis_mm": max_short,
    }, index=pd.Index(ids, name="patient_id"))

    design = pn_design(p)
    p["pn_logit"] = _linear(design, PN_MODEL)
    p["pn_prob"] = _sigmoid(p["pn_logit"])
    otc_logit = _linear(p[["morph_score", "lvi"]].astype(float), OTC_MODEL)
    p["otc_prob"] = _sigmoid(otc_logit)
    # Outcomes are drawn from the models conditioned on every latent class being
    # present, so that even tiny cohorts contain pN+, OTC and plain pN0 patients.
    need_pos, need_otc, need_neg = _min_counts(n)
    for _ in range(1000):
        pn_pos = rng.random(n) < p["pn_prob"].to_numpy()
        otc = ~pn_pos & (rng.random(n) < p["otc_prob"].to_numpy())
        if pn_pos.sum() >= need_pos and otc.sum() >= need_otc and (~pn_pos & ~otc).sum() >= need_neg:
            break
    else:  # pragma: no cover - probability ~0 for any n >= 4
        raise RuntimeError("could not draw a cohort containing every latent class; use more patients.")
    p["pn_positive"] = pn_pos.astype(int)
    p["otc"] = otc.astype(int)
    # Gamma-Poisson (negative binomial) counts: the long tail gives some pN3b patients.
    lam = np.exp(0.6 + 0.35 * np.clip(p["pn_logit"].to_numpy(), -3, 5)) * rng.gamma(1.5, 1 / 1.5, n)
    p["positive_nodes"] = np.where(pn_pos, 1 + rng.poisson(lam), 0)
    p["examined_nodes"] = np.maximum(p["positive_nodes"] + rng.integers(3, 12, n),
                                     np.round(rng.normal(30, 9, n)).clip(8, 80)).astype(int)
    p["pn_category"] = _pn_category(p["positive_nodes"].to_numpy())

    surv = pd.DataFrame({
        "pn_positive": p["pn_positive"].astype(float),
        "log1p_positive_nodes": np.log1p(p["positive_nodes"]),
        "ct_stage_num": design["ct_stage_num"],
        "age_decades": design["age_decades"],
        "morph_score": p["morph_score"],
        "neoadjuvant": p["neoadjuvant"].astype(float),
        "lvi": p["lvi"].astype(float),
        "otc": p["otc"].astype(float),
    }, index=p.index)
    p["os_eta"] = _linear(surv, OS_MODEL)
    p["recurrence_eta"] = _linear(surv, RECURRENCE_MODEL)
    p["death_months"] = _weibull_times(rng, p["os_eta"].to_numpy(), OS_MODEL["baseline"])
    p["recurrence_months"] = _weibull_times(rng, p["recurrence_eta"].to_numpy(), RECURRENCE_MODEL["baseline"])
    lo, hi = CENSORING["administrative_months"]
    p["censor_months"] = np.minimum(rng.uniform(lo, hi, n),
                                    rng.exponential(1.0 / CENSORING["dropout_rate_per_month"], n))
    death, rec, cens = p["death_months"], p["recurrence_months"], p["censor_months"]
    p["os_months"] = np.maximum(np.round(np.minimum(death, cens), 2), 0.01)
    p["os_event"] = (death <= cens).astype(int)
    first = np.minimum(rec, death)
    p["rfs_months"] = np.maximum(np.round(np.minimum(first, cens), 2), 0.01)
    p["rfs_event"] = (first <= cens).astype(int)
    return p, nodes


def _pn_category(positive):
    cats = np.full(positive.shape, "pN0", dtype=object)
    cats[(positive >= 1) & (positive <= 2)] = "pN1"
    cats[(positive >= 3) & (positive <= 6)] = "pN2"
    cats[(positive >= 7) & (positive <= 15)] = "pN3a"
    cats[positive >= 16] = "pN3b"
    return cats


def _draw_nodes(rng, ids, t_num):
    stations = np.array(list(GASTRIC_STATIONS))
    weights = np.array(list(GASTRIC_STATIONS.values()), dtype=float)
    weights /= weights.sum()
    rows = []
    for pid, t in zip(ids, t_num):
        enlargement = rng.standard_normal() + 0.3 * (t - 2.5)
        k = int(min(1 + rng.poisson(2.2), len(stations)))
        modality = rng.choice(_MODALITIES, p=_MODALITY_P)
        chosen = rng.choice(stations, size=k, replace=False, p=weights)
        short = np.clip(np.exp(np.log(5.5) + 0.3 * enlargement + 0.28 * rng.standard_normal(k)), 2.0, 45.0)
        for j in range(k):
            s = round(float(short[j]), 1)
            rows.append({
                "patient_id": pid, "node_id": f"N{j + 1}", "modality": modality, "station": chosen[j],
                "short_axis_mm": s, "long_axis_mm": round(s * float(rng.uniform(1.05, 1.9)), 1),
                "suv_max": (round(float(0.8 + 0.22 * s + rng.lognormal(0, 0.35)), 1)
                            if modality == "PET-CT" else np.nan),
                "fatty_hilum": int(rng.random() >= _sigmoid(-3.0 + 0.4 * (s - 6))),
                "irregular_margin": int(rng.random() < _sigmoid(-2.6 + 0.3 * (s - 6))),
                "necrosis": int(rng.random() < _sigmoid(-4.0 + 0.35 * (s - 6))),
                "enhancement": "heterogeneous" if rng.random() < _sigmoid(-1.5 + 0.3 * (s - 6))
                else "homogeneous",
                "mask_label": pd.NA,
            })
    nodes = pd.DataFrame(rows)
    nodes["mask_label"] = nodes["mask_label"].astype("Int64")
    return nodes


def _ct_stage_label(rng, t):
    if t == 1:
        return rng.choice(["cT1", "cT1a", "cT1b"], p=[0.5, 0.25, 0.25])
    if t == 4:
        return rng.choice(["cT4", "cT4a", "cT4b"], p=[0.3, 0.5, 0.2])
    return f"cT{t}"


def clinical_table(patients, rng):
    """``clinical.csv`` content: observed clinical values with missing values punched in.

    Parameters
    ----------
    patients : pandas.DataFrame
        Output of :func:`draw_patients`.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id``.
    """
    p = patients
    clinical = pd.DataFrame({
        "age": p["age"], "sex": p["sex"], "tumour_site": p["tumour_site"],
        "ct_stage": [_ct_stage_label(rng, t) for t in p["ct_stage_num"]],
        "grade": p["grade"], "lauren_type": p["lauren_type"], "tumour_size_mm": p["tumour_size_mm"],
        "cea_ng_ml": p["cea_ng_ml"], "ca19_9_u_ml": p["ca19_9_u_ml"], "lvi": p["lvi"], "pni": p["pni"],
        "neoadjuvant": p["neoadjuvant"],
    }, index=p.index)
    # Unassessed stage and grade are coded as cTX / GX now and then, as in real reports.
    clinical.loc[rng.random(len(p)) < 0.03, "ct_stage"] = "cTX"
    clinical.loc[rng.random(len(p)) < 0.03, "grade"] = "GX"
    for column, rate in MISSING_RATES.items():
        holes = rng.random(len(p)) < rate
        if column in ("lvi", "pni", "neoadjuvant"):
            clinical[column] = clinical[column].astype("Int64")
        clinical.loc[holes, column] = pd.NA if clinical[column].dtype == "Int64" else np.nan
    return clinical


def radiology_table(nodes, withheld):
    """``radiology_nodes.csv`` content: every node except those of withheld patients.

    Parameters
    ----------
    nodes : pandas.DataFrame
        Nodes from :func:`draw_patients`.
    withheld : collection of str
        Patients whose radiology is not available.

    Returns
    -------
    pandas.DataFrame
    """
    return nodes.loc[~nodes["patient_id"].isin(set(withheld))].reset_index(drop=True)


def outcomes_table(patients, rng):
    """``outcomes.csv`` content.

    Parameters
    ----------
    patients : pandas.DataFrame
        Output of :func:`draw_patients`.
    rng : numpy.random.Generator
        Source of randomness (a few pN0 patients get an unknown OTC status).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id``.
    """
    p = patients
    otc = p["otc"].astype("Int64").copy()
    # OTC is only assessed in pN0; a few pN0 patients were never assessed.
    otc[p["pn_positive"] == 1] = pd.NA
    unknown = (p["pn_positive"] == 0) & (p["otc"] == 0) & (rng.random(len(p)) < 0.05)
    otc[unknown] = pd.NA
    return pd.DataFrame({
        "pn_status": np.where(p["pn_positive"] == 1, "pN+", "pN0"),
        "pn_category": p["pn_category"], "positive_nodes": p["positive_nodes"],
        "examined_nodes": p["examined_nodes"], "otc": otc,
        "os_months": p["os_months"], "os_event": p["os_event"],
        "rfs_months": p["rfs_months"], "rfs_event": p["rfs_event"],
    }, index=p.index)
