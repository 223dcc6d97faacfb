"""Occult tumour cells in pN0 patients: a flag with its evidence tiles, and its prognosis."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lnmkit.exceptions import ExplainError

__all__ = ["OTCFlags", "otc_flags"]


def _pn0(outcomes):
    if "pn_status" not in outcomes.columns:
        raise ExplainError(f"otc_flags: outcomes need a 'pn_status' column (pN0 / pN+); got {list(outcomes.columns)}.")
    status = outcomes["pn_status"].astype("string").str.strip()
    return status.str.upper().eq("PN0").fillna(False)


@dataclass(frozen=True)
class OTCFlags:
    """High OTC scores among pN0 patients, with evidence tiles and survival.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by patient_id (pN0 patients with a score): ``otc_score``,
        ``flagged`` (bool), and the survival columns when given.
    threshold : float
        Score at or above which a pN0 patient is flagged.
    evidence : pandas.DataFrame
        Top tiles of each flagged patient by ``contribution_otc``: patient_id,
        slide_id, x, y, attention, contribution_otc, rank.
    logrank : dict
        ``statistic``, ``p``, ``n_flagged``, ``n_unflagged``, events per group and
        ``endpoint`` (empty when no survival was given or a group is empty).
    km : pandas.DataFrame
        Kaplan-Meier estimates per group: columns ``group``, ``time``,
        ``survival``, ``at_risk``.
    """

    table: pd.DataFrame
    threshold: float
    evidence: pd.DataFrame
    logrank: dict = field(default_factory=dict)
    km: pd.DataFrame = field(default_factory=pd.DataFrame)
    endpoint: str = ""

    @property
    def flagged(self):
        """list of str: flagged patients."""
        return self.table.index[self.table["flagged"]].tolist()

    def is_flagged(self, patient_id):
        """True when the patient is pN0 and flagged."""
        pid = str(patient_id)
        return bool(pid in self.table.index and self.table.loc[pid, "flagged"])

    def evidence_tiles(self, patient_id):
        """The evidence tiles of one flagged patient (DataFrame, possibly empty)."""
        return self.evidence[self.evidence["patient_id"] == str(patient_id)]

    def plot(self, ax=None):
        """Kaplan-Meier curves of flagged vs unflagged pN0 patients with the log-rank p.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(5, 3.6)) if ax is None else (ax.figure, ax))
        if self.km.empty:
            ax.text(0.5, 0.5, "no survival data for pN0 patients", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return fig
        colors = {"OTC flag": "#C44E52", "no flag": "#4C72B0"}
        for group, g in self.km.groupby("group", sort=False):
            n = int((self.table["flagged"] == (group == "OTC flag")).sum())
            ax.step(g["time"], g["survival"], where="post", color=colors.get(group), label=f"{group} (n={n})")
        p = self.logrank.get("p")
        title = f"pN0 patients, {self.endpoint}" + (f": log-rank p = {p:.3g}" if p is not None else "")
        ax.set(xlabel="time", ylabel="survival probability", ylim=(0, 1.02), title=title)
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        return fig

    def __repr__(self):
        p = self.logrank.get("p")
        lr = f", log-rank p={p:.3g}" if p is not None else ""
        return (f"<OTCFlags: {int(self.table['flagged'].sum())} of {len(self.table)} pN0 patients flagged "
                f"(otc_score >= {self.threshold:.3g}){lr}>")

    def _repr_html_(self):
        import html

        return f"<p><code>{html.escape(repr(self))}</code></p>" + self.table.head(20).to_html(float_format="%.3f")


def _km_table(time, event, group):
    from lifelines import KaplanMeierFitter

    frames = []
    for name in ("OTC flag", "no flag"):
        sel = group == name
        if not sel.any():
            continue
        kmf = KaplanMeierFitter().fit(time[sel], event[sel])
        sf = kmf.survival_function_.iloc[:, 0]
        at_risk = kmf.event_table["at_risk"].reindex(sf.index).fillna(0).astype(int)
        frames.append(pd.DataFrame({"group": name, "time": sf.index.to_numpy(float),
                                    "survival": sf.to_numpy(float), "at_risk": at_risk.to_numpy()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["group", "time", "survival",
                                                                                     "at_risk"])


def otc_flags(scores, outcomes, attention=None, *, threshold=0.5, score_column="otc_score", endpoint="os",
              time_column=None, event_column=None, k=8):
    """Flag pN0 patients with a high occult-tumour-cell score.

    Parameters
    ----------
    scores : pandas.DataFrame or pandas.Series
        Out-of-fold OTC scores indexed by patient_id (``CrossFitResult.oof`` or a
        fusion table with ``score_column``).
    outcomes : pandas.DataFrame
        Indexed by patient_id with ``pn_status`` and, for the survival view,
        ``<endpoint>_months`` and ``<endpoint>_event`` (or ``time_column`` /
        ``event_column``).
    attention : pandas.DataFrame, optional
        Tile table with ``contribution_otc`` (``CrossFitResult.attention``) for the
        evidence tiles.
    threshold : float, default=0.5
        Flag when the score is at least this (a probability).
    score_column : str, default="otc_score"
        Column of ``scores`` (e.g. ``slide_otc_score`` in a fusion table).
    endpoint : str, default="os"
    time_column, event_column : str, optional
    k : int, default=8
        Evidence tiles per flagged patient.

    Returns
    -------
    OTCFlags
        The flags, evidence tiles, and Kaplan-Meier / log-rank of flagged vs
        unflagged pN0 patients (lifelines ``logrank_test``).
    """
    from lifelines.statistics import logrank_test

    if isinstance(scores, pd.DataFrame):
        if score_column not in scores.columns:
            raise ExplainError(f"otc_flags: scores lack column {score_column!r}; columns are "
                               f"{list(scores.columns)[:12]}. Pass score_column=.")
        s = scores[score_column]
    else:
        s = pd.Series(scores)
    s = pd.to_numeric(s, errors="coerce")
    s.index = s.index.astype(str)
    outcomes = outcomes.copy()
    outcomes.index = outcomes.index.astype(str)
    pn0 = _pn0(outcomes.reindex(s.index))
    table = pd.DataFrame({"otc_score": s[pn0 & s.notna()]})
    table.index.name = "patient_id"
    table["flagged"] = table["otc_score"] >= float(threshold)
    tcol = time_column or f"{endpoint}_months"
    ecol = event_column or f"{endpoint}_event"
    logrank, km = {}, pd.DataFrame(columns=["group", "time", "survival", "at_risk"])
    if tcol in outcomes.columns and ecol in outcomes.columns:
        table["time"] = pd.to_numeric(outcomes.loc[table.index, tcol], errors="coerce")
        table["event"] = pd.to_numeric(outcomes.loc[table.index, ecol], errors="coerce")
        ok = table["time"].notna() & table["event"].notna()
        sub = table[ok]
        group = np.where(sub["flagged"], "OTC flag", "no flag")
        km = _km_table(sub["time"].to_numpy(float), sub["event"].to_numpy(float), group)
        a, b = sub[sub["flagged"]], sub[~sub["flagged"]]
        if len(a) and len(b):
            res = logrank_test(a["time"], b["time"], a["event"], b["event"])
            logrank = {"statistic": float(res.test_statistic), "p": float(res.p_value), "n_flagged": len(a),
                       "n_unflagged": len(b), "events_flagged": int(a["event"].sum()),
                       "events_unflagged": int(b["event"].sum()), "endpoint": endpoint}
    ev_cols = ["patient_id", "slide_id", "x", "y", "attention", "contribution_otc", "rank"]
    evidence = pd.DataFrame(columns=ev_cols)
    if attention is not None and table["flagged"].any():
        if "contribution_otc" not in attention.columns:
            raise ExplainError("otc_flags: the tile table has no 'contribution_otc'; train the MIL model with the "
                               "'otc' task (MILClassifier(tasks=('lnm', 'otc'))).")
        tiles = attention[attention["patient_id"].astype(str).isin(table.index[table["flagged"]])].copy()
        tiles["patient_id"] = tiles["patient_id"].astype(str)
        tiles = tiles.sort_values(["patient_id", "contribution_otc"], ascending=[True, False])
        tiles["rank"] = tiles.groupby("patient_id").cumcount() + 1
        evidence = tiles[tiles["rank"] <= int(k)][ev_cols].reset_index(drop=True)
    return OTCFlags(table, float(threshold), evidence, logrank, km, endpoint)
