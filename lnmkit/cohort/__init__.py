"""Load and validate cohort tables against the schemas in ``data_schemas/``."""

from lnmkit.cohort._cohort import Cohort
from lnmkit.cohort._problem import Problem, has_errors, problems_frame
from lnmkit.cohort._schemas import TableSchema, load_schemas, schema_dir
from lnmkit.cohort._validate import validate_cohort

__all__ = [
    "Cohort",
    "Problem",
    "TableSchema",
    "has_errors",
    "load_schemas",
    "problems_frame",
    "schema_dir",
    "validate_cohort",
]
