"""Attention multiple-instance learning on tile-feature bags.

One bag per patient (all tiles of the patient's slides), masked padded batches,
cross-fitted out-of-fold scores, embeddings and per-tile attention, attention
heatmaps, top-tile montages and attention localisation against annotations
(QuPath / GeoJSON polygons or mask images).
"""

from lnmkit.mil._attention import (
    LocalisationResult,
    annotation_tile_labels,
    attention_heatmap,
    attention_localisation_auc,
    top_tiles,
)
from lnmkit.mil._crossfit import CrossFitResult, cross_fit, make_folds
from lnmkit.mil._data import PatientBag, collate_bags, length_bucketed_batches, load_bags
from lnmkit.mil._estimator import MILClassifier, percentile_rank
from lnmkit.mil._metrics import auc_delong
from lnmkit.mil._models import (
    ABMIL,
    ARCHITECTURES,
    CLAMSB,
    InstanceMIL,
    MaxPoolMIL,
    MeanPoolMIL,
    MILModel,
    build_model,
    cox_partial_likelihood,
    smooth_top1_svm_loss,
)
from lnmkit.mil._run import MilRun, run_mil

__all__ = [
    "ABMIL",
    "ARCHITECTURES",
    "CLAMSB",
    "CrossFitResult",
    "InstanceMIL",
    "LocalisationResult",
    "MILClassifier",
    "MILModel",
    "MaxPoolMIL",
    "MeanPoolMIL",
    "MilRun",
    "PatientBag",
    "annotation_tile_labels",
    "attention_heatmap",
    "attention_localisation_auc",
    "auc_delong",
    "build_model",
    "collate_bags",
    "cox_partial_likelihood",
    "cross_fit",
    "length_bucketed_batches",
    "load_bags",
    "make_folds",
    "percentile_rank",
    "run_mil",
    "smooth_top1_svm_loss",
    "top_tiles",
]
