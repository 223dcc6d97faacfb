"""lnmkit: lymph node metastasis and prognosis from whole-slide histology,
clinical and radiology tables, with explanations."""

from lnmkit._version import __version__

__all__ = ["__version__", "Cohort"]


def __getattr__(name):
    # imported on first use so that `import lnmkit` (and `lnmkit --help`) stays fast
    if name == "Cohort":
        from lnmkit.cohort import Cohort

        return Cohort
    raise AttributeError(f"module 'lnmkit' has no attribute {name!r}")
