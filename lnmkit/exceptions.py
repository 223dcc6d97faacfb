"""Exception and warning classes raised by lnmkit.

Every error raised on bad input names what is wrong and where: the file, and where
it applies the row, the column and the offending value, so that an analyst can fix
the input without reading lnmkit's code.
"""

from __future__ import annotations

__all__ = [
    "LnmkitError",
    "CohortValidationError",
    "CohortValidationWarning",
    "DataSchemaError",
    "SlideError",
    "MissingMppError",
    "AnnotationError",
    "AnnotationWarning",
    "MissingWeightsError",
    "IncompatibleWeightsError",
    "FeatureBagError",
    "ExtractionError",
    "ExtractionWarning",
    "NotFittedError",
    "MILInputError",
    "NodeTableError",
    "RadiologyImageError",
    "ImageGeometryError",
    "RadiologyWarning",
    "ModelInputError",
    "LeakageError",
    "LeakageWarning",
    "VersionWarning",
    "ConfigError",
    "ExplainError",
    "AdditivityError",
    "ReportPrivacyError",
]


class LnmkitError(Exception):
    """Base class of every exception defined by lnmkit."""


def _problem_list(where, problems, limit):
    """Message listing the first ``limit`` problems, one per line (a long list would bury the traceback)."""
    lines = [f"{len(problems)} problem(s) {where}:"]
    lines += [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more (all in .problems)")
    return "\n".join(lines)


class CohortValidationError(LnmkitError, ValueError):
    """One or more problems found while validating cohort tables.

    Parameters
    ----------
    problems : list of lnmkit.cohort.Problem
        Every problem found, not only the first.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(_problem_list("found in the cohort", self.problems, 50))


class CohortValidationWarning(UserWarning):
    """A cohort loaded, but validation found warnings (listed in ``Cohort.problems``)."""


class DataSchemaError(LnmkitError, ValueError):
    """A file in ``data_schemas/`` is not a valid lnmkit table schema.

    The message names the schema file, the keyword path and what is wrong.
    """


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


class AnnotationError(LnmkitError, ValueError):
    """A slide annotation file (GeoJSON, mask image) cannot be read or used.

    Parameters
    ----------
    path : str or path-like
        The annotation file (or a description of an in-memory object).
    reason : str
        What is wrong and how to fix it.
    feature : int, optional
        Index of the offending feature in the file's feature list.
    """

    def __init__(self, path, reason, feature=None):
        self.path = str(path)
        self.feature = feature
        self.reason = reason
        where = self.path if feature is None else f"{self.path}: feature {feature}"
        super().__init__(f"{where}: {reason}")


class AnnotationWarning(UserWarning):
    """An annotation was read, but some of its content was left out (no area, another class)."""


class MissingWeightsError(LnmkitError, FileNotFoundError):
    """Pretrained weights for a tile encoder are not available locally."""


class IncompatibleWeightsError(LnmkitError, ValueError):
    """A weights file was found but does not fit the encoder's architecture.

    The message names the file, the missing and unexpected parameter names (or
    shapes that differ) and which checkpoint the encoder expects.
    """


class FeatureBagError(LnmkitError, ValueError):
    """A feature bag (HDF5) or feature run folder is missing, malformed or inconsistent."""


class ExtractionError(LnmkitError, RuntimeError):
    """Feature extraction produced no usable slide; the manifest holds each slide's error."""


class ExtractionWarning(UserWarning):
    """Feature extraction finished, but some slides failed (named in the message and the manifest)."""


class NotFittedError(LnmkitError, ValueError, AttributeError):
    """An estimator was used before ``fit`` was called."""


class MILInputError(LnmkitError, ValueError):
    """Bags or outcomes given to ``lnmkit.mil`` are unusable (empty or non-finite bag,
    mismatched feature dimension, missing or invalid outcome); the message names the
    patient, column and value."""


class MILInputWarning(UserWarning):
    """Feature bags were usable but some were left out or disagree with the cohort."""


class NodeTableError(LnmkitError, ValueError):
    """A radiology node table (``radiology_nodes.csv``) has invalid rows or columns.

    Parameters
    ----------
    problems : list of str
        Every problem found (file, row, column, value and what to do), not only the first.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(_problem_list("in the radiology node table", self.problems, 25))


class RadiologyImageError(LnmkitError, ValueError):
    """A radiology volume or node mask cannot be read or used.

    Parameters
    ----------
    path : str or path-like
        The offending file.
    reason : str
        What went wrong and what to do about it.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageGeometryError(RadiologyImageError):
    """An image and its node mask do not share the same voxel grid.

    Parameters
    ----------
    image_path, mask_path : str or path-like
        The two files.
    reason : str
        Which geometry attributes differ, with both values.
    """

    def __init__(self, image_path, mask_path, reason):
        self.image_path = str(image_path)
        self.mask_path = str(mask_path)
        super().__init__(mask_path, f"geometry differs from image {self.image_path}: {reason}")


class RadiologyWarning(UserWarning):
    """Radiology input was usable but something in it was dropped or looks wrong."""


class ModelInputError(LnmkitError, ValueError):
    """Data given to a patient-level model, the fusion table or an evaluation is unusable
    (single-class outcome, constant or all-missing column, unseen category level, patients
    without an outcome); the message names the column, the value and, where it applies,
    the patient."""


class LeakageError(LnmkitError, ValueError):
    """A score that feeds a downstream model has no out-of-fold provenance, or was
    produced under folds other than the ones the downstream model is evaluated on."""


class LeakageWarning(UserWarning):
    """A model was evaluated on inputs that may carry label information from the test
    patients (for example in-sample slide scores accepted on request)."""


class VersionWarning(UserWarning):
    """A file was written by another lnmkit version than the one reading it."""


class ConfigError(LnmkitError, ValueError):
    """A pipeline configuration is invalid: a wrong type, an unknown key, a missing
    cohort folder, an encoder without weights or an endpoint the cohort lacks.

    Attributes
    ----------
    problems : list of str
        One line per problem, each naming the key (dotted, e.g. ``slides.mpp``) and
        the value it holds.
    """

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = None if source is None else str(source)
        where = f"in {self.source}" if self.source else "in the configuration"
        super().__init__(_problem_list(where, self.problems, 20))


class ExplainError(LnmkitError, ValueError):
    """A model or table cannot be explained as asked (unsupported model, missing
    feature, no provenance for a column, a tile table that does not match the scores)."""


class AdditivityError(ExplainError):
    """SHAP values plus the base value do not reproduce the model's own raw output.

    Attributes
    ----------
    max_error : float
        Largest absolute difference over the explained rows.
    """

    def __init__(self, message, max_error=float("nan")):
        self.max_error = float(max_error)
        super().__init__(message)


class ReportPrivacyError(LnmkitError, ValueError):
    """A report would contain a slide path, a label or macro image or an identifier
    other than the patient_id."""


class NomogramInputError(LnmkitError, ValueError):
    """Data, predictors or outcome given to ``lnmkit.nomogram`` cannot be modelled.

    The message names the function, the column, the offending value and (where it
    applies) the row, and says what to do.
    """
