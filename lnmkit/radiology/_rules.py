"""Rules that turn node measurements into counts: size criteria and N categories.

The presets are data, not code, so that a user can read them, print them and
replace them with the criteria of their own institution or cancer type.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from lnmkit._validation import check_positive

__all__ = [
    "SIZE_PRESETS",
    "N_CATEGORY_PRESETS",
    "CANCER_TYPES",
    "SUSPICIOUS_FEATURES",
    "SizeCriteria",
    "NCategoryRule",
    "normalize_station",
    "resolve_size_criteria",
    "resolve_n_category",
]

#: JGCA perigastric stations (1-6, with the sub-stations of 3 and 4).
PERIGASTRIC_STATIONS = ("1", "2", "3", "3a", "3b", "4", "4sa", "4sb", "4d", "5", "6")

#: Short-axis cut-offs in mm. ``"default"`` applies to any station not listed.
SIZE_PRESETS = {
    # Short axis >= 8 mm is the most used CT cut-off for gastric cancer nodes.
    "gastric": {"default": 8.0},
    # Perigastric nodes are small; 5 mm there and 8 mm elsewhere raises sensitivity.
    "gastric_perigastric": {"default": 8.0, **{s: 5.0 for s in PERIGASTRIC_STATIONS}},
    # The usual cut-off for thoraco-abdominal nodes in most solid tumours (RECIST-style).
    "general": {"default": 10.0},
}

#: Minimum number of suspicious nodes for each clinical N category, lowest first.
N_CATEGORY_PRESETS = {
    # AJCC 8th edition gastric: N1 1-2, N2 3-6, N3 >= 7 nodes.
    "gastric": {"cN0": 0, "cN1": 1, "cN2": 3, "cN3": 7},
    # AJCC 8th edition colorectal-style count cut-offs: N1 1-3, N2 >= 4 nodes.
    "general": {"cN0": 0, "cN1": 1, "cN2": 4},
}

CANCER_TYPES = ("gastric", "general")

#: Node findings that make a node suspicious whatever its size.
SUSPICIOUS_FEATURES = ("necrosis", "irregular_margin", "lost_hilum", "heterogeneous_enhancement", "suv")


def normalize_station(value):
    """Return a station label in canonical form: stripped, lower case, no ``.0``.

    Parameters
    ----------
    value : object
        Station as read from a table (``"4sb"``, ``7``, ``7.0``, ``" 12A "``); NaN or
        None for unknown.

    Returns
    -------
    str or None
        ``None`` when the station is unknown.
    """
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if math.isnan(value):
            return None
        # pandas reads an all-numeric station column with gaps as float: 7.0 means "7".
        if float(value).is_integer():
            return str(int(value))
    text = str(value).strip().lower()
    return text or None


@dataclass(frozen=True)
class SizeCriteria:
    """Short-axis cut-off (mm) per lymph-node station, with a default.

    A node meets the size criterion when its short axis is at least the cut-off
    of its station; a node with an unknown station gets ``default_mm``.

    Parameters
    ----------
    default_mm : float
        Cut-off for stations not listed in ``by_station``.
    by_station : dict of str to float, default={}
        Station-specific cut-offs; keys are normalised with :func:`normalize_station`.
    name : str, default="custom"
        Preset name, for display.
    """

    default_mm: float
    by_station: dict = field(default_factory=dict)
    name: str = "custom"

    def threshold_for(self, station):
        """Return the cut-off in mm for a station.

        Parameters
        ----------
        station : object
            Station label, normalised before look-up.

        Returns
        -------
        float
        """
        key = normalize_station(station)
        return self.by_station.get(key, self.default_mm) if key is not None else self.default_mm

    def describe(self):
        """Return the rule in words, e.g. ``"short axis >= 8 mm (stations 1, 2: 5 mm)"``.

        Returns
        -------
        str
        """
        text = f"short_axis_mm >= {self.default_mm:g} mm"
        if self.by_station:
            groups = {}
            for station, mm in self.by_station.items():
                groups.setdefault(mm, []).append(station)
            parts = [f"stations {', '.join(sorted(v, key=_station_sort_key))}: {mm:g} mm"
                     for mm, v in sorted(groups.items())]
            text += " (" + "; ".join(parts) + ")"
        return text + "; NaN short axis never meets it"


def _station_sort_key(station):
    digits = "".join(ch for ch in station if ch.isdigit())
    return (int(digits) if digits else 10**6, station)


@dataclass(frozen=True)
class NCategoryRule:
    """Clinical N category from the number of suspicious nodes.

    Parameters
    ----------
    labels : tuple of str
        Category labels, lowest first (``("cN0", "cN1", "cN2", "cN3")``).
    minimum : tuple of int
        Smallest count of suspicious nodes of each category; ``minimum[0] == 0``
        and strictly increasing.
    """

    labels: tuple
    minimum: tuple

    def code(self, count):
        """Return the integer code (index into ``labels``) of a node count.

        Parameters
        ----------
        count : int
            Number of suspicious nodes (>= 0).

        Returns
        -------
        int
        """
        code = 0
        for i, lower in enumerate(self.minimum):
            if count >= lower:
                code = i
        return code

    def describe(self):
        """Return the rule in words, e.g. ``"cN0: 0; cN1: 1-2; cN2: 3-6; cN3: >= 7"``.

        Returns
        -------
        str
        """
        parts = []
        for i, (label, lower) in enumerate(zip(self.labels, self.minimum)):
            if i + 1 < len(self.minimum):
                upper = self.minimum[i + 1] - 1
                parts.append(f"{label}: {lower}" if upper == lower else f"{label}: {lower}-{upper}")
            else:
                parts.append(f"{label}: >= {lower}")
        return "; ".join(parts) + " suspicious nodes"


def resolve_size_criteria(size_criteria, cancer, *, owner="NodeFeatures"):
    """Turn the ``size_criteria`` parameter into a :class:`SizeCriteria`.

    Parameters
    ----------
    size_criteria : None, str, float or dict
        ``None``: the preset of ``cancer``; a preset name (see ``SIZE_PRESETS``); one
        cut-off in mm for every station; or ``{station: mm, ..., "default": mm}``
        (without ``"default"`` the cancer preset's default applies).
    cancer : str
        Cancer type, one of ``CANCER_TYPES``.
    owner : str, default="NodeFeatures"
        Name used in error messages.

    Returns
    -------
    SizeCriteria

    Raises
    ------
    TypeError
        If ``size_criteria`` has an unsupported type.
    ValueError
        If a preset name is unknown or a cut-off is not a positive number.
    """
    base = SIZE_PRESETS[cancer]
    if size_criteria is None:
        size_criteria = cancer
    if isinstance(size_criteria, str):
        if size_criteria not in SIZE_PRESETS:
            raise ValueError(
                f"{owner}: size_criteria must be one of {sorted(SIZE_PRESETS)}, a number of mm or a "
                f"dict {{station: mm, 'default': mm}}; got {size_criteria!r} instead."
            )
        preset = SIZE_PRESETS[size_criteria]
        return SizeCriteria(
            preset["default"], {k: v for k, v in preset.items() if k != "default"}, size_criteria
        )
    if isinstance(size_criteria, numbers.Real) and not isinstance(size_criteria, bool):
        return SizeCriteria(check_positive(size_criteria, "size_criteria", owner), {}, f"{size_criteria:g} mm")
    if isinstance(size_criteria, dict):
        default = check_positive(size_criteria.get("default", base["default"]), "size_criteria['default']", owner)
        by_station = {}
        for station, mm in size_criteria.items():
            if station == "default":
                continue
            key = normalize_station(station)
            if key is None:
                raise ValueError(f"{owner}: size_criteria has an empty station key {station!r}.")
            by_station[key] = check_positive(mm, f"size_criteria[{station!r}]", owner)
        return SizeCriteria(default, by_station, "custom")
    raise TypeError(
        f"{owner}: size_criteria must be None, a preset name, a number of mm or a dict; "
        f"got {type(size_criteria).__name__} instead."
    )


def resolve_n_category(n_category_thresholds, cancer, *, owner="NodeFeatures"):
    """Turn the ``n_category_thresholds`` parameter into an :class:`NCategoryRule`.

    Parameters
    ----------
    n_category_thresholds : None, str or dict
        ``None``: the preset of ``cancer``; a preset name (see ``N_CATEGORY_PRESETS``);
        or ``{label: minimum count}`` with one label at 0 and distinct minima.
    cancer : str
        Cancer type, one of ``CANCER_TYPES``.
    owner : str, default="NodeFeatures"
        Name used in error messages.

    Returns
    -------
    NCategoryRule

    Raises
    ------
    TypeError, ValueError
        If the thresholds are malformed.
    """
    spec = cancer if n_category_thresholds is None else n_category_thresholds
    if isinstance(spec, str):
        if spec not in N_CATEGORY_PRESETS:
            raise ValueError(
                f"{owner}: n_category_thresholds must be one of {sorted(N_CATEGORY_PRESETS)} or a dict "
                f"{{label: minimum number of suspicious nodes}}; got {spec!r} instead."
            )
        spec = N_CATEGORY_PRESETS[spec]
    if not isinstance(spec, dict) or not spec:
        raise TypeError(
            f"{owner}: n_category_thresholds must be None, a preset name or a non-empty dict "
            f"{{label: minimum count}}; got {spec!r} instead."
        )
    items = []
    for label, lower in spec.items():
        if isinstance(lower, bool) or not isinstance(lower, numbers.Integral) or lower < 0:
            raise ValueError(
                f"{owner}: n_category_thresholds[{label!r}] must be an integer >= 0; got {lower!r} instead."
            )
        items.append((int(lower), str(label)))
    items.sort()
    minima = [lower for lower, _ in items]
    if minima[0] != 0:
        raise ValueError(
            f"{owner}: n_category_thresholds needs a category starting at 0 suspicious nodes; "
            f"got {dict(spec)!r}."
        )
    if len(set(minima)) != len(minima):
        raise ValueError(f"{owner}: n_category_thresholds has two categories with the same minimum: {dict(spec)!r}.")
    labels = [label for _, label in items]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{owner}: n_category_thresholds has duplicate labels: {labels!r}.")
    return NCategoryRule(tuple(labels), tuple(minima))
