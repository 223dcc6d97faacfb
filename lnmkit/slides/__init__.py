"""Whole-slide images: opening, microns per pixel, fast tile reading, tissue masks."""

from lnmkit.slides._slide import Slide, open_slide
from lnmkit.slides._tissue import TissueMask, segment_tissue

__all__ = ["open_slide", "Slide", "segment_tissue", "TissueMask"]
