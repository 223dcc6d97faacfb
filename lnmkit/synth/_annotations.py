"""The planted tumour masks of a synthetic cohort as slide annotations (mask or QuPath GeoJSON)."""

from __future__ import annotations

import json
from pathlib import Path

from lnmkit._io import atomic_write_text
from lnmkit.synth._truth import load_planted_mask, load_truth

__all__ = ["planted_annotations", "write_planted_annotations"]

_TUMOUR_CLASS = {"name": "Tumor", "color": [200, 0, 0]}


def planted_annotations(cohort_dir, slide_ids=None):
    """Planted tumour masks as :class:`lnmkit.slides.SlideAnnotation` objects (mask form).

    Parameters
    ----------
    cohort_dir : str or path-like
        Folder written by :func:`lnmkit.synth.make_cohort` (holding ``truth/``).
    slide_ids : iterable of str, optional
        Slides to read; default every slide of the planted truth.

    Returns
    -------
    dict of str to SlideAnnotation
        ``slide_id -> annotation``; slides without tumour have an empty mask.
        Pass it as ``annotations=`` to :func:`lnmkit.mil.run_mil` or
        :func:`lnmkit.mil.attention_localisation_auc`.
    """
    from lnmkit.slides import SlideAnnotation

    truth = load_truth(cohort_dir)
    ids = sorted(truth.get("slides", {})) if slide_ids is None else [str(s) for s in slide_ids]
    out = {}
    for sid in ids:
        planted = load_planted_mask(cohort_dir, sid)
        out[sid] = SlideAnnotation.from_mask(planted.mask, planted.downsample, slide_id=sid)
        out[sid].source = str(Path(cohort_dir) / "truth" / truth["slides"][sid]["mask"])
    return out


def write_planted_annotations(cohort_dir, out_dir, slide_ids=None):
    """Write the planted tumour of each slide as a QuPath-style GeoJSON file.

    One ``<slide_id>.geojson`` per slide: a FeatureCollection of Polygon
    features (holes kept) classified ``Tumor``, in level-0 pixels, the way a
    pathologist's QuPath export looks; slides without tumour get an empty
    collection. The folder is what ``lnmkit mil --annotations`` reads.

    Parameters
    ----------
    cohort_dir : str or path-like
        Folder written by :func:`lnmkit.synth.make_cohort`.
    out_dir : str or path-like
        Destination folder.
    slide_ids : iterable of str, optional
        Default every slide of the planted truth.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    from lnmkit.slides._polygons import mask_to_polygons, polygons_to_features

    out_dir = Path(out_dir)
    for sid, ann in planted_annotations(cohort_dir, slide_ids).items():
        features = polygons_to_features(mask_to_polygons(ann.mask, ann.downsample, tolerance=0.5))
        for feature in features:
            feature["properties"]["classification"] = dict(_TUMOUR_CLASS)
        atomic_write_text(out_dir / f"{sid}.geojson",
                          json.dumps({"type": "FeatureCollection", "features": features}))
    return out_dir
