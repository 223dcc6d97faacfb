"""ROC AUC with DeLong confidence intervals (implemented in :mod:`lnmkit.evaluation`)."""

from __future__ import annotations

from lnmkit.evaluation._delong import auc_delong

__all__ = ["auc_delong"]
