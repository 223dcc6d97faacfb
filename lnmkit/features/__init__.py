"""Tile encoders, HDF5 feature bags and resumable cohort feature extraction.

Examples
--------
>>> from lnmkit.features import get_encoder, list_encoders
>>> "stain-texture" in list_encoders()
True
"""

from lnmkit.features._bags import FeatureBag, read_bag, write_bag
from lnmkit.features._extract import extract
from lnmkit.features._featureset import FeatureSet, open_features
from lnmkit.features._registry import TileEncoder, get_encoder, list_encoders, register_encoder
from lnmkit.features.encoders._timm import PATHOLOGY_ENCODERS, pathology_encoders

__all__ = [
    "TileEncoder",
    "get_encoder",
    "list_encoders",
    "register_encoder",
    "pathology_encoders",
    "PATHOLOGY_ENCODERS",
    "FeatureBag",
    "read_bag",
    "write_bag",
    "extract",
    "FeatureSet",
    "open_features",
]
