"""Patient-level models on the fusion table, scikit-learn / scikit-survival compatible.

LNM classifiers (XGBoost, logistic regression) and survival models (Cox PH, random
survival forest, gradient-boosted survival, XGBoost Cox and AFT).
"""

from lnmkit.models._cox import CoxPH, PHTestResult
from lnmkit.models._compare import ModelComparison, compare_models, default_feature_sets
from lnmkit.models._folds import make_patient_folds
from lnmkit.models._lnm import LNMLogisticRegression, LNMXGBClassifier, load_model
from lnmkit.models._nested import NestedCVResult, nested_cv
from lnmkit.models._report import LNMModelsRun, run_lnm_models
from lnmkit.models._stacking import NestedFeatures
from lnmkit.models._survival_cv import cross_val_survival
from lnmkit.models._survival_forest import GradientBoostedSurvival, RandomSurvivalForest
from lnmkit.models._xgb_survival import XGBAFTSurvival, XGBCoxSurvival

__all__ = [
    "CoxPH",
    "GradientBoostedSurvival",
    "PHTestResult",
    "RandomSurvivalForest",
    "XGBAFTSurvival",
    "XGBCoxSurvival",
    "cross_val_survival",
    "LNMLogisticRegression",
    "LNMXGBClassifier",
    "ModelComparison",
    "compare_models",
    "default_feature_sets",
    "NestedCVResult",
    "NestedFeatures",
    "load_model",
    "make_patient_folds",
    "nested_cv",
    "LNMModelsRun",
    "run_lnm_models",
]
