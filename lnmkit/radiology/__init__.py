"""Radiology: lymph-node reports and CT/MRI/PET volumes to patient-level features.

:class:`NodeFeatures` turns a node table (``radiology_nodes.csv``) into counts,
morphology and a clinical N category per patient; :class:`NodeRadiomics` measures
each segmented node in an image volume (shape, intensity, texture) and aggregates
per patient.
"""

from lnmkit.radiology._node_table import NODE_MODALITIES, validate_nodes
from lnmkit.radiology._images import IMAGE_MODALITIES, read_images_table, read_mask, read_volume
from lnmkit.radiology._nodes import NodeFeatures
from lnmkit.radiology._plot import plot_node
from lnmkit.radiology._radiomics import NodeRadiomics
from lnmkit.radiology._rules import (
    N_CATEGORY_PRESETS,
    SIZE_PRESETS,
    NCategoryRule,
    SizeCriteria,
)

__all__ = [
    "NodeFeatures",
    "NodeRadiomics",
    "plot_node",
    "IMAGE_MODALITIES",
    "read_images_table",
    "read_volume",
    "read_mask",
    "SizeCriteria",
    "NCategoryRule",
    "SIZE_PRESETS",
    "N_CATEGORY_PRESETS",
    "NODE_MODALITIES",
    "validate_nodes",
]
