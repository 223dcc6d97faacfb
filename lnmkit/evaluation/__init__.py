"""Performance of patient-level predictions: binary (LNM) and survival metrics with
confidence intervals, calibration and decision curves, as result objects with
``.table``, ``.plot(ax=None)`` and ``_repr_html_``.
"""

from lnmkit.evaluation._binary import (BinaryEvaluation, CalibrationResult, DecisionCurveResult, RocResult,
                                      ThresholdResult, calibration, decision_curve, evaluate_binary, roc_auc,
                                      threshold_metrics, youden_threshold)
from lnmkit.evaluation._delong import auc_delong, delong_test
from lnmkit.evaluation._reclassification import ReclassificationResult, reclassification
from lnmkit.evaluation._survival_analysis import (SURVIVAL_MODELS, SurvivalAnalysis, get_survival_model,
                                                  survival_analysis)
from lnmkit.evaluation._survival_calibration import SurvivalCalibrationResult, survival_calibration
from lnmkit.evaluation._survival_compare import SurvivalComparison, compare_survival_models, harrell_c
from lnmkit.evaluation._survival_groups import (RiskGroupResult, SurvivalDecisionCurve, km_by_risk_group,
                                                survival_decision_curve)
from lnmkit.evaluation._survival_metrics import (BrierScoreResult, ConcordanceResult, TimeDependentAUCResult,
                                                 brier_score, concordance_index, survival_time_grid,
                                                 time_dependent_auc)

__all__ = [
    "BrierScoreResult",
    "SURVIVAL_MODELS",
    "SurvivalAnalysis",
    "get_survival_model",
    "survival_analysis",
    "ConcordanceResult",
    "RiskGroupResult",
    "SurvivalCalibrationResult",
    "SurvivalComparison",
    "SurvivalDecisionCurve",
    "TimeDependentAUCResult",
    "brier_score",
    "compare_survival_models",
    "concordance_index",
    "harrell_c",
    "km_by_risk_group",
    "survival_calibration",
    "survival_decision_curve",
    "survival_time_grid",
    "time_dependent_auc",
    "auc_delong",
    "delong_test",
    "BinaryEvaluation",
    "CalibrationResult",
    "DecisionCurveResult",
    "ReclassificationResult",
    "RocResult",
    "ThresholdResult",
    "calibration",
    "decision_curve",
    "evaluate_binary",
    "reclassification",
    "roc_auc",
    "threshold_metrics",
    "youden_threshold",
]
