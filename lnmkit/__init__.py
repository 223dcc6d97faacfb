"""lnmkit: lymph node metastasis and prognosis from whole-slide histology,
clinical and radiology tables, with explanations."""

from lnmkit._version import __version__

__all__ = ["__version__"]
