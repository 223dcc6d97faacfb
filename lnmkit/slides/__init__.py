"""Whole-slide images: opening, microns per pixel, fast tile reading, tissue masks, annotations.

>>> from lnmkit.slides import open_slide, segment_tissue
>>> with open_slide("S01.svs") as slide:  # doctest: +SKIP
...     tissue = segment_tissue(slide)
...     tissue.to_geojson("S01.geojson")
"""

from lnmkit.slides._annotations import SlideAnnotation, read_annotation, read_annotations
from lnmkit.slides._slide import Slide, open_slide
from lnmkit.slides._tissue import DEFAULT_TISSUE_PARAMS, TissueMask, segment_tissue

__all__ = ["open_slide", "Slide", "segment_tissue", "TissueMask", "DEFAULT_TISSUE_PARAMS", "SlideAnnotation",
           "read_annotation", "read_annotations"]
