"""Performance of patient-level predictions: binary (LNM) and survival metrics with
confidence intervals, calibration and decision curves, as result objects with
``.table``, ``.plot(ax=None)`` and ``_repr_html_``.
"""

from lnmkit.evaluation._delong import auc_delong, delong_test

__all__ = [
    "auc_delong",
    "delong_test",
]
