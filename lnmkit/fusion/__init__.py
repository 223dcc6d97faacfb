"""One table per patient: clinical, radiology and slide scores, and leak-free stacking.

:func:`build_fusion_table` joins the encoded clinical table, radiology patient
features and out-of-fold MIL slide scores into a :class:`FusionTable`;
:func:`nested_cross_fit` gives slide scores that are out-of-fold at both levels of a
nested evaluation (:class:`lnmkit.models.NestedFeatures`).
"""

from lnmkit.fusion._stacking import SLIDE_SCORE_COLUMNS, nested_cross_fit
from lnmkit.fusion._table import ORDINAL_CODES, FusionTable, build_fusion_table

__all__ = [
    "FusionTable",
    "ORDINAL_CODES",
    "build_fusion_table",
    "SLIDE_SCORE_COLUMNS",
    "nested_cross_fit",
]
