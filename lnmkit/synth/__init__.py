"""Synthetic multimodal cohorts with planted ground truth, for demos and tests."""

from lnmkit.synth._annotations import planted_annotations, write_planted_annotations
from lnmkit.synth._cohort import CONFOUNDERS, MORPHOLOGIES, REGIMES, make_cohort
from lnmkit.synth._ct import make_ct_volume, write_ct_case
from lnmkit.synth._slide_file import write_slide
from lnmkit.synth._tables import GASTRIC_STATIONS
from lnmkit.synth._tissue import make_tissue_image
from lnmkit.synth._truth import (CENSORING, MASK_DOWNSAMPLE, OS_MODEL, OTC_MODEL, PN_MODEL,
                                 RECURRENCE_MODEL, PlantedMask, load_confounder_mask, load_planted_mask,
                                 load_truth)

__all__ = [
    "make_cohort",
    "make_ct_volume",
    "write_ct_case",
    "write_slide",
    "make_tissue_image",
    "load_planted_mask",
    "load_confounder_mask",
    "REGIMES",
    "MORPHOLOGIES",
    "CONFOUNDERS",
    "planted_annotations",
    "write_planted_annotations",
    "load_truth",
    "PlantedMask",
    "PN_MODEL",
    "OTC_MODEL",
    "OS_MODEL",
    "RECURRENCE_MODEL",
    "CENSORING",
    "MASK_DOWNSAMPLE",
    "GASTRIC_STATIONS",
]
