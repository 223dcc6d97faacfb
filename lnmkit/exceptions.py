"""Exception and warning classes raised by lnmkit.

Every error raised on bad input names what is wrong and where: the file, and where
it applies the row, the column and the offending value, so that an analyst can fix
the input without reading lnmkit's code.
"""

from __future__ import annotations

__all__ = [
    "LnmkitError",
    "CohortValidationError",
    "SlideError",
    "MissingMppError",
    "MissingWeightsError",
    "NotFittedError",
]


class LnmkitError(Exception):
    """Base class of every exception defined by lnmkit."""


class CohortValidationError(LnmkitError, ValueError):
    """One or more problems found while validating cohort tables.

    Parameters
    ----------
    problems : list of lnmkit.cohort.Problem
        Every problem found, not only the first.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) found in the cohort:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class SlideError(LnmkitError, ValueError):
    """A whole-slide image cannot be opened or read.

    Parameters
    ----------
    path : str or path-like
        The slide file.
    reason : str
        What went wrong, and where possible what to do about it.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingMppError(SlideError):
    """A slide declares no microns-per-pixel and no override was given."""


class MissingWeightsError(LnmkitError, FileNotFoundError):
    """Pretrained weights for a tile encoder are not available locally."""


class NotFittedError(LnmkitError, ValueError, AttributeError):
    """An estimator was used before ``fit`` was called."""
