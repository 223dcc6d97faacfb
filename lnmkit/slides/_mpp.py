"""Microns per pixel of a slide: from an override, OpenSlide, vendor keys or TIFF tags."""

from __future__ import annotations

import math

__all__ = ["resolve_mpp", "MPP_RANGE"]

# Whole-slide scanners write 0.1-2 µm/px at level 0; anything coarser than 20 µm/px
# is an image editor's default resolution (72 or 96 dpi), not a measurement.
MPP_RANGE = (0.01, 20.0)

_UNIT_MICRONS = {"centimeter": 1e4, "inch": 25400.0, "millimeter": 1e3, "micrometer": 1.0}


def _as_float(value):
    try:
        number = float(str(value).strip().split()[0])
    except (ValueError, IndexError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _from_resolution_tags(properties):
    unit = str(properties.get("tiff.ResolutionUnit", "")).strip().lower()
    microns = _UNIT_MICRONS.get(unit)
    x = _as_float(properties.get("tiff.XResolution"))
    y = _as_float(properties.get("tiff.YResolution"))
    if microns is None or x is None:
        return None
    return microns / x, microns / (y or x)


def resolve_mpp(properties, override=None):
    """Find the level-0 microns per pixel of a slide.

    Sources, first usable wins: ``override``; OpenSlide's ``openslide.mpp-x`` and
    ``openslide.mpp-y``; the Aperio ``aperio.MPP`` key; the TIFF ``XResolution`` /
    ``YResolution`` tags with a centimetre or inch ``ResolutionUnit`` (a unit of
    ``none`` carries no physical size).

    Parameters
    ----------
    properties : mapping of str to str
        OpenSlide properties of the slide.
    override : float, optional
        Microns per pixel given by the user; wins over the file. ``None`` or NaN
        means no override.

    Returns
    -------
    mpp_x, mpp_y : float or None
        Microns per pixel along x and y; ``None`` when no source gives a plausible value.
    source : str
        Where the value came from, or why none was usable.

    Raises
    ------
    ValueError
        If ``override`` is given but not a positive finite number.
    """
    if override is not None and not (isinstance(override, float) and math.isnan(override)):
        try:
            value = float(override)
        except (TypeError, ValueError):
            raise ValueError(f"mpp override must be a positive number; got {override!r} instead.") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"mpp override must be a positive number; got {override!r} instead.")
        return value, value, "override"
    candidates = []
    x, y = _as_float(properties.get("openslide.mpp-x")), _as_float(properties.get("openslide.mpp-y"))
    if x is not None:
        candidates.append((x, y or x, "openslide.mpp-x/mpp-y"))
    aperio = _as_float(properties.get("aperio.MPP"))
    if aperio is not None:
        candidates.append((aperio, aperio, "aperio.MPP"))
    tags = _from_resolution_tags(properties)
    if tags is not None:
        candidates.append((*tags, "TIFF resolution tags"))
    rejected = {}
    for mpp_x, mpp_y, source in candidates:
        if MPP_RANGE[0] <= mpp_x <= MPP_RANGE[1] and MPP_RANGE[0] <= mpp_y <= MPP_RANGE[1]:
            return mpp_x, mpp_y, source
        rejected.setdefault(f"{mpp_x:.4g}", []).append(source)
    if not rejected:
        return None, None, "the file declares no microns per pixel"
    found = "; ".join(f"{' and '.join(sources)} {'give' if len(sources) > 1 else 'gives'} {value} µm/px"
                      for value, sources in rejected.items())
    return None, None, (f"{found}, outside the plausible range {MPP_RANGE[0]}-{MPP_RANGE[1]} µm/px "
                        f"of a slide scanner (an image editor's default resolution?)")
