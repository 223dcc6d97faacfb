"""Reports as self-contained HTML (embedded PNGs, no scripts, no external requests).

* :func:`patient_report` / :class:`ReportContext`: one patient's risk report
  (LNM probability and risk group, predicted survival, SHAP waterfall and
  modality shares, nomogram position, slide heatmap and top tiles, OTC flag,
  radiology nodes, provenance);
* :func:`cohort_report`: the cohort's model report (participants, missing data,
  model specification, performance and validation results, global SHAP views,
  OTC prognosis, TRIPOD+AI checklist with the analyst's to-do items);
* :func:`write_reports`: every patient's report, the cohort report and an index.

Reports never contain slide label or macro images, slide paths, slide ids or any
identifier other than the ``patient_id``; :func:`check_privacy` enforces it on
every HTML written.
"""

from lnmkit.report._batch import write_reports
from lnmkit.report._cohort import TRIPOD_ITEMS, CohortReport, cohort_report
from lnmkit.report._html import check_privacy
from lnmkit.report._patient import PatientReport, ReportContext, patient_report

__all__ = ["CohortReport", "PatientReport", "ReportContext", "TRIPOD_ITEMS", "check_privacy", "cohort_report",
           "patient_report", "write_reports"]
