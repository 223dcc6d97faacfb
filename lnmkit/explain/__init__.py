"""Explanations from clinical variable down to tile.

* :func:`explain`: SHAP values of any lnmkit model (XGBoost, logistic, Cox,
  survival forests) as a ``shap.Explanation`` on the model's raw scale, or on
  S(t) at a horizon, checked for additivity against the model's own output;
* :func:`modality_shap`: per-patient sums by clinical / radiology / slide;
* :func:`tile_shap`: the slide score's SHAP value spread over the patient's tiles;
* :func:`otc_flags`: occult-tumour-cell flags in pN0 patients with their evidence
  tiles and the survival of flagged vs unflagged patients;
* plots: :func:`plot_beeswarm`, :func:`plot_bar`, :func:`plot_dependence`,
  :func:`plot_waterfall`.
"""

from lnmkit.explain._modality import ModalityShap, modality_shap, provenance_of
from lnmkit.explain._otc import OTCFlags, otc_flags
from lnmkit.explain._plots import plot_bar, plot_beeswarm, plot_dependence, plot_waterfall
from lnmkit.explain._shap import SCALES, check_additivity, explain, model_output
from lnmkit.explain._tiles import TileShap, tile_shap

__all__ = [
    "ModalityShap",
    "OTCFlags",
    "SCALES",
    "TileShap",
    "check_additivity",
    "explain",
    "modality_shap",
    "model_output",
    "otc_flags",
    "plot_bar",
    "plot_beeswarm",
    "plot_dependence",
    "plot_waterfall",
    "provenance_of",
    "tile_shap",
]
