"""Per-patient SHAP summed by modality (clinical / radiology / slide)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lnmkit.exceptions import ExplainError

__all__ = ["ModalityShap", "modality_shap", "provenance_of"]

#: Order in which modalities are shown; other provenance labels follow, sorted.
MODALITY_ORDER = ("clinical", "radiology", "slide")
MODALITY_COLORS = {"clinical": "#4C72B0", "radiology": "#55A868", "slide": "#C44E52"}


def provenance_of(source, feature_names=None):
    """Column -> modality mapping from a FusionTable, a Series or a dict.

    Parameters
    ----------
    source : FusionTable, pandas.Series, or dict
        Anything with a ``provenance`` attribute (a FusionTable), or the mapping
        itself.
    feature_names : list of str, optional
        When given, every name must have a provenance.

    Returns
    -------
    dict of str to str

    Raises
    ------
    ExplainError
        A feature has no provenance.
    """
    prov = getattr(source, "provenance", source)
    if callable(prov) and not isinstance(prov, (dict, pd.Series)):
        prov = prov()
    if isinstance(prov, pd.DataFrame):
        col = "modality" if "modality" in prov.columns else prov.columns[0]
        prov = prov[col]
    if isinstance(prov, pd.Series):
        prov = prov.to_dict()
    if not isinstance(prov, dict):
        raise TypeError(f"provenance_of: expected a FusionTable, a Series or a dict; got {type(source).__name__}.")
    prov = {str(k): str(v) for k, v in prov.items()}
    if feature_names is not None:
        missing = [f for f in feature_names if f not in prov]
        if missing:
            raise ExplainError(f"modality_shap: no provenance for feature(s) {missing[:10]}; pass a provenance "
                               "mapping that covers every model column (e.g. FusionTable.provenance).")
    return prov


@dataclass(frozen=True)
class ModalityShap:
    """SHAP values summed per modality, one row per patient.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by patient_id: one column per modality (sum of that modality's
        SHAP values), ``base_value`` and ``output`` (base + every modality = the
        model's raw output).
    scale : str
        The scale the values add up on (e.g. ``"log-odds"``).
    provenance : dict
        Feature -> modality used.
    """

    table: pd.DataFrame
    scale: str
    provenance: dict

    @property
    def modalities(self):
        """list of str: the modality columns, in display order."""
        return [c for c in self.table.columns if c not in ("base_value", "output")]

    def shares(self):
        """Each modality's share of the patient's total absolute SHAP (rows sum to 1).

        Returns
        -------
        pandas.DataFrame
        """
        mods = self.table[self.modalities].abs()
        total = mods.sum(axis=1).replace(0.0, np.nan)
        return mods.div(total, axis=0).fillna(0.0)

    def to_frame(self):
        """The table (a copy)."""
        return self.table.copy()

    def dominant(self):
        """Modality with the largest absolute SHAP sum per patient (Series)."""
        return self.table[self.modalities].abs().idxmax(axis=1).rename("dominant_modality")

    def plot(self, ax=None, patient_id=None, kind=None):
        """Bar of modality contributions.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
        patient_id : str, optional
            One patient's signed contributions; default the cohort's mean absolute
            share per modality.
        kind : ignored, kept for a uniform signature

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = (plt.subplots(figsize=(4.8, 2.6)) if ax is None else (ax.figure, ax))
        mods = self.modalities
        colors = [MODALITY_COLORS.get(m, "0.5") for m in mods]
        if patient_id is not None:
            row = self.table.loc[str(patient_id), mods]
            ax.barh(mods, row.to_numpy(), color=colors)
            ax.axvline(0, color="0.3", lw=0.8)
            ax.set_xlabel(f"SHAP ({self.scale})")
            ax.set_title(f"Contribution by modality, patient {patient_id}", fontsize=10)
        else:
            share = self.shares().mean(axis=0)
            ax.barh(mods, share.to_numpy(), color=colors)
            ax.set_xlim(0, 1)
            ax.set_xlabel("mean share of |SHAP|")
            ax.set_title(f"Modality share over {len(self.table)} patients", fontsize=10)
        ax.invert_yaxis()
        fig.tight_layout()
        return fig

    def __repr__(self):
        share = self.shares().mean(axis=0)
        parts = ", ".join(f"{m} {share[m]:.0%}" for m in self.modalities)
        return f"<ModalityShap: {len(self.table)} patients, {self.scale}, mean |SHAP| share: {parts}>"

    def _repr_html_(self):
        import html

        return f"<p><code>{html.escape(repr(self))}</code></p>" + self.table.head(20).to_html(float_format="%.4f")


def modality_shap(explanation, provenance):
    """Sum each patient's SHAP values by modality.

    Parameters
    ----------
    explanation : shap.Explanation
        Two-dimensional, from :func:`lnmkit.explain.explain`.
    provenance : FusionTable, pandas.Series or dict
        Feature -> modality (``clinical``, ``radiology``, ``slide``, ...).

    Returns
    -------
    ModalityShap
        Per-patient sums; they add up, with the base value, to the model output.

    Examples
    --------
    >>> import numpy as np, shap
    >>> ex = shap.Explanation(np.array([[0.1, 0.2, -0.3]]), base_values=np.array([0.5]),
    ...                       feature_names=["age", "rad_n", "slide_lnm_score"], instance_names=["P1"])
    >>> modality_shap(ex, {"age": "clinical", "rad_n": "radiology", "slide_lnm_score": "slide"}).table.round(2)
              clinical  radiology  slide  base_value  output
    patient_id
    P1             0.1        0.2   -0.3         0.5     0.5
    """
    values = np.asarray(explanation.values, float)
    if values.ndim != 2:
        raise ValueError(f"modality_shap: needs a 2-D Explanation (patients x features); got {values.ndim}-D. "
                         "Pass the whole cohort's Explanation, not explanation[0].")
    names = list(explanation.feature_names)
    prov = provenance_of(provenance, names)
    labels = [prov[f] for f in names]
    present = set(labels)
    mods = [m for m in MODALITY_ORDER if m in present] + sorted(present - set(MODALITY_ORDER))
    ids = explanation.instance_names
    index = pd.Index([str(i) for i in ids] if ids is not None else range(values.shape[0]), name="patient_id")
    table = pd.DataFrame(index=index)
    for m in mods:
        cols = [j for j, lab in enumerate(labels) if lab == m]
        table[m] = values[:, cols].sum(axis=1)
    base = np.asarray(explanation.base_values, float).reshape(-1)
    table["base_value"] = base
    table["output"] = base + values.sum(axis=1)
    scale = explanation.output_names if isinstance(explanation.output_names, str) else "model output"
    return ModalityShap(table, scale, {f: prov[f] for f in names})
