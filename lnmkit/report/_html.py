"""Self-contained HTML: embedded PNGs, inline CSS, no scripts, no external requests, privacy checks."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lnmkit.exceptions import ReportPrivacyError

__all__ = ["Section", "figure_png", "img_tag", "table_html", "page", "check_privacy", "frame_hash", "model_hash"]

CSS = """
.lnmkit-report{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;max-width:1180px;
  line-height:1.35;font-size:14px}
.lnmkit-report h1{font-size:22px;margin:8px 0 4px}
.lnmkit-report h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:3px;margin:22px 0 8px}
.lnmkit-report .meta{color:#666;font-size:12px}
.lnmkit-report .cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.lnmkit-report .card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:160px}
.lnmkit-report .card .v{font-size:22px;font-weight:600}
.lnmkit-report .card .l{color:#555;font-size:12px}
.lnmkit-report .flag{background:#fdecea;border:1px solid #e6a19a;border-radius:6px;padding:8px 12px}
.lnmkit-report .todo{color:#a15c00;font-weight:600}
.lnmkit-report .done{color:#1b7a2f;font-weight:600}
.lnmkit-report table{border-collapse:collapse;margin:6px 0;font-size:12.5px}
.lnmkit-report th,.lnmkit-report td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
.lnmkit-report th{background:#f5f5f5}
.lnmkit-report td.t,.lnmkit-report th.t{text-align:left}
.lnmkit-report img{max-width:100%;height:auto;border:0}
.lnmkit-report .row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.lnmkit-report .note{color:#555;font-size:12px;max-width:900px}
"""


@dataclass
class Section:
    """One titled block of a report.

    Attributes
    ----------
    key : str
        Short name (used for PNG file names).
    title : str
    body : str
        HTML (escaped text, tables, ``<img>`` tags with data URIs).
    images : dict of str to bytes
        PNGs shown in ``body``, by name.
    """

    key: str
    title: str
    body: str
    images: dict = field(default_factory=dict)


def figure_png(fig, dpi=110, close=True):
    """PNG bytes of a matplotlib Figure (the figure is closed by default)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    if close:
        plt.close(fig)
    return buf.getvalue()


def img_tag(png, alt, width=None):
    """``<img>`` with the PNG embedded as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    w = f' width="{int(width)}"' if width else ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"{w}>'


def _fmt(v, digits):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def table_html(frame, digits=3, index=True, max_rows=60):
    """An escaped HTML table of a DataFrame (no pandas styling, no classes needing CSS files)."""
    frame = frame.head(max_rows)
    cols = list(frame.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    if index:
        name = frame.index.name or ""
        head = f'<th class="t">{html.escape(str(name))}</th>' + head
    rows = []
    for idx, r in frame.iterrows():
        cells = "".join(
            f'<td class="{"t" if not isinstance(v, (int, float, np.number)) or isinstance(v, bool) else ""}">'
            f"{html.escape(_fmt(v, digits))}</td>" for v in r.tolist())
        if index:
            cells = f'<td class="t">{html.escape(str(idx))}</td>' + cells
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title, fragment):
    """A complete HTML document around a report fragment (UTF-8, inline CSS, no scripts)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title></head><body>{fragment}</body></html>\n")


def fragment(title, meta_line, sections):
    """The report body: a style block, a header and the sections."""
    parts = [f"<div class=\"lnmkit-report\"><style>{CSS}</style>",
             f"<h1>{html.escape(title)}</h1><div class=\"meta\">{html.escape(meta_line)}</div>"]
    for s in sections:
        parts.append(f"<h2 id=\"{html.escape(s.key)}\">{html.escape(s.title)}</h2>{s.body}")
    parts.append("</div>")
    return "".join(parts)


_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
_EXTERNAL = re.compile(r"""(?:\bsrc|\bhref)\s*=\s*(?!["']?(?:data:|#))|url\(\s*["']?(?!data:)|@import""",
                       re.IGNORECASE)


def check_privacy(text, forbidden=(), where="report"):
    """Refuse HTML that references anything outside itself or contains a forbidden string.

    Parameters
    ----------
    text : str
        The HTML.
    forbidden : iterable of str
        Strings that must not appear (slide paths and file names, slide ids,
        label text), compared case-insensitively.
    where : str

    Raises
    ------
    ReportPrivacyError
    """
    low = _DATA_URI.sub("data:", text).lower()
    if "<script" in low:
        raise ReportPrivacyError(f"{where}: the report contains a <script> element; reports must need no scripts.")
    m = _EXTERNAL.search(text)
    if m:
        raise ReportPrivacyError(f"{where}: the report references an external resource near "
                                 f"{text[max(0, m.start() - 40):m.end() + 40]!r}; embed it instead.")
    for s in forbidden:
        s = str(s).strip()
        if len(s) >= 3 and s.lower() in low:
            raise ReportPrivacyError(f"{where}: the report would contain {s!r} (a slide path, slide id or label "
                                     "text); reports show only the patient_id.")


def forbidden_strings(slides):
    """Slide ids, paths and file names that must not appear in a report.

    Parameters
    ----------
    slides : dict of str to path-like, or None

    Returns
    -------
    list of str
    """
    out = []
    for sid, path in (slides or {}).items():
        out.append(str(sid))
        if path is None:
            continue
        p = Path(str(path))
        out += [str(p), p.name, p.stem]
        try:
            out.append(str(p.resolve()))
            out.append(str(p.resolve().parent))
        except OSError:
            pass
    return sorted({s for s in out if len(s) >= 3 and s not in {"/", ".", ".."}}, key=len, reverse=True)


def frame_hash(frame):
    """SHA-256 (first 16 hex digits) of a DataFrame's values, index and columns."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    h.update("|".join(map(str, frame.columns)).encode())
    return h.hexdigest()[:16]


def model_hash(model):
    """SHA-256 (first 16 hex digits) of a fitted model's learnt state, without pickling it.

    XGBoost models hash their JSON; other models hash their parameters and every
    fitted array / Series attribute (names ending in ``_``).
    """
    h = hashlib.sha256(type(model).__qualname__.encode())
    booster = getattr(model, "booster_", None)
    if booster is None and hasattr(model, "get_booster"):
        booster = model.get_booster()
    if booster is None and type(model).__name__ == "Booster":
        booster = model
    if booster is not None:
        h.update(bytes(booster.save_raw("json")))
    if hasattr(model, "get_params"):
        h.update(repr(sorted((k, repr(v)) for k, v in model.get_params(deep=False).items())).encode())
    for name in sorted(vars(model)):
        if not name.endswith("_") or name.startswith("_"):
            continue
        v = getattr(model, name)
        if isinstance(v, (pd.Series, pd.DataFrame)):
            h.update(name.encode())
            h.update(np.ascontiguousarray(v.to_numpy(dtype=float, na_value=np.nan)).tobytes()
                     if v.dtypes is not object and np.issubdtype(np.asarray(v).dtype, np.number) else repr(v).encode())
        elif isinstance(v, np.ndarray) and v.dtype != object:
            h.update(name.encode())
            h.update(np.ascontiguousarray(v).tobytes())
        elif isinstance(v, (int, float, str)):
            h.update(f"{name}={v!r}".encode())
    return h.hexdigest()[:16]
