"""Nomograms and internal validation that agree with R's rms.

``fit_nomogram`` fits a logistic (``lrm``) or Cox (``cph``) model with rms's
restricted cubic splines and dummy coding and lays it out as ``rms::nomogram``
does; ``validate`` and ``calibrate`` repeat ``rms::validate`` and ``rms::calibrate``
(bootstrap optimism), optionally refitting the imputation in every bootstrap sample.
"""

from lnmkit.nomogram._calibrate import CalibrationResult, calibrate
from lnmkit.nomogram._nomogram import Nomogram, fit_nomogram
from lnmkit.nomogram._pretty import pretty
from lnmkit.nomogram._rcs import rcs_basis, rcs_knots
from lnmkit.nomogram._report import NomogramReport, write_nomogram
from lnmkit.nomogram._validate import ValidationResult, validate

__all__ = ["CalibrationResult", "Nomogram", "NomogramReport", "ValidationResult", "calibrate", "fit_nomogram",
           "pretty", "rcs_basis", "rcs_knots", "validate", "write_nomogram"]
