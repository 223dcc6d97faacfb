"""``stain-texture``: a hand-crafted H&E tile descriptor that needs no weights.

Every step is computed for the whole batch at once (lookup tables, one matrix
product, ``np.bincount`` histograms and one 3-D connected-component labelling),
so that a single CPU core encodes several hundred 224 px tiles per second.

All cut-offs are fixed by stain physics or published conventions, never fitted
to any data set:

* optical density ``OD = -log10(I / 255)`` per RGB channel (Beer-Lambert);
* colour deconvolution with the Ruifrok-Johnston (2001) H, E and DAB unit
  vectors, the matrix used by ``skimage.color.rgb2hed``; our concentrations are
  in log10 OD units (``rgb2hed`` values times ~6);
* background = OD norm below 0.15, the transparency threshold of Macenko et al.
  (2009); "dark" = every channel transmits < 10 % (OD > 1), which H&E does not
  produce at section thickness (pen, folds, debris);
* hematoxylin OD cut-offs 0.2 / 0.35 / 0.5 (faint, nuclear, hyperchromatic);
  nuclei are connected components at H >= 0.35 larger than 8 µm².
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lnmkit.features._registry import TileEncoder, register_encoder

__all__ = ["StainTextureEncoder"]

# Ruifrok & Johnston (2001), Anal Quant Cytol Histol 23:291-299, rows: H, E, DAB.
_STAIN_VECTORS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_STAIN_VECTORS = _STAIN_VECTORS / np.linalg.norm(_STAIN_VECTORS, axis=1, keepdims=True)
_STAIN_FROM_OD = np.linalg.inv(_STAIN_VECTORS).astype(np.float32)
_OD_LUT = (-np.log10(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)

_BACKGROUND_OD = 0.15
_DARK_OD = 1.0
_H_LEVELS = (0.2, 0.35, 0.5)
_NUCLEUS_H = 0.35
_MIN_NUCLEUS_UM2 = 8.0
_LARGE_NUCLEUS_UM2 = 80.0
_HIST_BINS, _HIST_MAX = 200, 2.0
_PERCENTILES = (10, 25, 50, 75, 90)
_GLCM_LEVELS, _GLCM_STEP = 8, 0.15
_GLCM_DISTANCES = (1, 2)
_HAAR_LEVELS = 4

# 4-connectivity inside a tile, none across the batch axis.
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = ndimage.generate_binary_structure(2, 1)


def _riu2_lut():
    """Map 8-bit LBP codes to rotation-invariant uniform bins 0..9 (Ojala et al. 2002)."""
    lut = np.empty(256, dtype=np.int64)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        lut[code] = sum(bits) if transitions <= 2 else 9
    return lut


_RIU2 = _riu2_lut()


def _feature_names():
    names = ["background_fraction", "dark_fraction"]
    for channel in ("od", "h", "e"):
        names += [f"{channel}_mean", f"{channel}_std"] + [f"{channel}_p{q}" for q in _PERCENTILES]
    names += ["residual_mean", "residual_std", "h_fraction_of_stain",
              "od_red_mean", "od_green_mean", "od_blue_mean"]
    names += [f"nuclear_fraction_h{int(round(t * 100)):03d}" for t in _H_LEVELS]
    names += ["nuclei_per_10k_um2", "nuclear_area_mean_um2", "nuclear_area_p25_um2",
              "nuclear_area_p50_um2", "nuclear_area_p75_um2", "large_nuclear_area_fraction",
              "h_in_nuclei_mean", "e_outside_nuclei_mean"]
    for scale in (1, 2):
        names += [f"lbp_s{scale}_u{k}" for k in range(9)] + [f"lbp_s{scale}_nonuniform"]
    for d in _GLCM_DISTANCES:
        names += [f"glcm_d{d}_{p}" for p in ("contrast", "homogeneity", "energy", "correlation",
                                            "entropy")]
    names += [f"haar_h_rms_l{k}" for k in range(1, _HAAR_LEVELS + 1)]
    names += [f"haar_e_rms_l{k}" for k in range(1, _HAAR_LEVELS + 1)]
    names += [f"haar_h_anisotropy_l{k}" for k in range(1, _HAAR_LEVELS + 1)]
    return names


_NAMES = _feature_names()


def _safe_div(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _row_dot(a, b):
    """Per-row dot product of two (B, P) float32 arrays."""
    return np.einsum("ij,ij->i", a, b).astype(np.float64)


def _masked_mean_std(values, w, n):
    """Weighted mean and standard deviation per row (two-pass: float32 cancels otherwise)."""
    mean = _safe_div(_row_dot(values, w), n)
    centred = values - mean.astype(np.float32)[:, None]
    std = np.sqrt(_safe_div(_row_dot(centred * centred, w), n))
    return mean, std


def _binned_counts(index, keep, n_rows, n_bins):
    """Per-row counts of ``index`` (B, P) in [0, n_bins) over ``keep`` pixels.

    Pixels outside ``keep`` are sent to one extra bin that is dropped, which is
    cheaper than float weights.
    """
    flat = index + (np.arange(n_rows, dtype=np.int64) * n_bins).reshape((-1,) + (1,) * (index.ndim - 1))
    flat = np.where(keep, flat, n_rows * n_bins)
    return np.bincount(flat.ravel(), minlength=n_rows * n_bins + 1)[:-1].reshape(n_rows, n_bins)


def _masked_stats(values, w, tissue, n, sub_values, sub_tissue):
    """Mean, std and percentiles of ``values`` (B, P) over tissue pixels, per row.

    Means and standard deviations use every pixel; percentiles come from a
    fixed-range histogram (0.01 OD bins) of every second pixel in both axes,
    which leaves them unchanged at that resolution and costs a quarter.
    """
    b = values.shape[0]
    mean, std = _masked_mean_std(values, w, n)
    bins = (sub_values * (_HIST_BINS / _HIST_MAX)).astype(np.int64)
    np.clip(bins, 0, _HIST_BINS - 1, out=bins)
    counts = _binned_counts(bins, sub_tissue, b, _HIST_BINS)
    cum = np.cumsum(counts, axis=1)
    n_sub = cum[:, -1]
    width = _HIST_MAX / _HIST_BINS
    cols = [mean, std]
    for q in _PERCENTILES:
        idx = (cum < (q / 100.0) * n_sub[:, None]).sum(1)
        cols.append(np.where(n_sub > 0, (np.minimum(idx, _HIST_BINS - 1) + 0.5) * width, 0.0))
    return cols


def _nuclear_features(h, e, tissue, n_tissue, shape, px_area_um2):
    b, height, width = shape
    nuclei = (h >= _NUCLEUS_H) & tissue
    labels, n_labels = ndimage.label(nuclei.reshape(shape), structure=_STRUCTURE)
    flat_labels = labels.reshape(b, -1)
    areas = np.bincount(flat_labels.ravel(), minlength=n_labels + 1)[1:] * px_area_um2
    # Scan-order labelling numbers every tile's components after the previous tile's.
    last = np.maximum.accumulate(flat_labels.max(axis=1))
    tile_of = np.searchsorted(last, np.arange(1, n_labels + 1), side="left")
    keep = areas >= _MIN_NUCLEUS_UM2
    areas, tile_of = areas[keep], tile_of[keep]
    count = np.bincount(tile_of, minlength=b).astype(np.float64)
    per_10k = _safe_div(count * 1e4, n_tissue * px_area_um2)
    nuclear_area = np.bincount(tile_of, weights=areas, minlength=b)
    mean_area = _safe_div(nuclear_area, count)
    order = np.lexsort((areas, tile_of))
    sorted_areas = np.append(areas[order], 0.0)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    quantiles = []
    for q in (0.25, 0.5, 0.75):
        pos = start + np.floor(q * np.maximum(count - 1, 0)).astype(np.int64)
        quantiles.append(np.where(count > 0, sorted_areas[np.minimum(pos, len(areas))], 0.0))
    large_area = np.bincount(tile_of, weights=areas * (areas >= _LARGE_NUCLEUS_UM2), minlength=b)
    large_fraction = _safe_div(large_area, nuclear_area)
    n_nuc = np.count_nonzero(nuclei, axis=1)
    h_in = _safe_div(_row_dot(h, nuclei.astype(np.float32)), n_nuc)
    outside = tissue & ~nuclei
    e_out = _safe_div(_row_dot(e, outside.astype(np.float32)), np.count_nonzero(outside, axis=1))
    return [per_10k, mean_area, *quantiles, large_fraction, h_in, e_out]


_LBP_SHIFTS = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))


def _lbp_hist(img, tissue):
    """Rotation-invariant uniform LBP(8, 1) histogram over tissue pixels, per tile."""
    b = img.shape[0]
    c = img[:, 1:-1, 1:-1]
    code = np.zeros(c.shape, dtype=np.uint8)
    for bit, (dy, dx) in enumerate(_LBP_SHIFTS):
        neighbour = img[:, dy:dy + c.shape[1], dx:dx + c.shape[2]]
        code |= np.greater_equal(neighbour, c).view(np.uint8) << np.uint8(bit)
    hist = _binned_counts(_RIU2[code], tissue[:, 1:-1, 1:-1], b, 10).astype(np.float64)
    return _safe_div(hist, hist.sum(1, keepdims=True))


def _glcm_props(q, tissue, distance):
    """Symmetric GLCM of the quantised H channel (0 and 90 degrees pooled)."""
    b, levels = q.shape[0], _GLCM_LEVELS
    counts = np.zeros((b, levels * levels))
    for qa, qb, wa, wb in (
        (q[:, :, :-distance], q[:, :, distance:], tissue[:, :, :-distance], tissue[:, :, distance:]),
        (q[:, :-distance, :], q[:, distance:, :], tissue[:, :-distance, :], tissue[:, distance:, :]),
    ):
        counts += _binned_counts(qa * levels + qb, wa & wb, b, levels * levels)
    p = counts.reshape(b, levels, levels)
    p = p + p.transpose(0, 2, 1)
    p = _safe_div(p, p.sum((1, 2), keepdims=True))
    i, j = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
    diff2 = (i - j) ** 2
    contrast = (p * diff2).sum((1, 2))
    homogeneity = (p / (1.0 + diff2)).sum((1, 2))
    energy = np.sqrt((p * p).sum((1, 2)))
    mu_i = (p * i).sum((1, 2))[:, None, None]
    mu_j = (p * j).sum((1, 2))[:, None, None]
    var_i = (p * (i - mu_i) ** 2).sum((1, 2))
    var_j = (p * (j - mu_j) ** 2).sum((1, 2))
    cov = (p * (i - mu_i) * (j - mu_j)).sum((1, 2))
    correlation = _safe_div(cov, np.sqrt(var_i * var_j))
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    entropy = -(p * logp).sum((1, 2))
    return [contrast, homogeneity, energy, correlation, entropy]


def _haar(img, weight):
    """RMS Haar detail amplitude and anisotropy per dyadic level, tissue-weighted."""
    rms, aniso = [], []
    b = img.shape[0]
    for _ in range(_HAAR_LEVELS):
        h2, w2 = img.shape[1] // 2 * 2, img.shape[2] // 2 * 2
        if h2 < 2 or w2 < 2:
            rms.append(np.zeros(b))
            aniso.append(np.zeros(b))
            continue
        img, weight = img[:, :h2, :w2], weight[:, :h2, :w2]
        a, b_, c, d = img[:, 0::2, 0::2], img[:, 0::2, 1::2], img[:, 1::2, 0::2], img[:, 1::2, 1::2]
        top, bottom, left_diff, right_diff = a + b_, c + d, a - b_, c - d
        vertical = (top - bottom).reshape(b, -1)
        horizontal = (left_diff + right_diff).reshape(b, -1)
        diagonal = (left_diff - right_diff).reshape(b, -1)
        w = (weight[:, 0::2, 0::2] + weight[:, 0::2, 1::2] + weight[:, 1::2, 0::2]
             + weight[:, 1::2, 1::2]) * 0.25
        wf = w.reshape(b, -1)
        wsum = wf.sum(1, dtype=np.float64)
        # The 1/2 of the orthonormal Haar filters is folded into the 0.25 below.
        ev = _safe_div(_row_dot(vertical * vertical, wf) * 0.25, wsum)
        eh = _safe_div(_row_dot(horizontal * horizontal, wf) * 0.25, wsum)
        ed = _safe_div(_row_dot(diagonal * diagonal, wf) * 0.25, wsum)
        rms.append(np.sqrt(ev + eh + ed))
        aniso.append(_safe_div(np.abs(ev - eh), ev + eh))
        img, weight = (top + bottom) * 0.25, w
    return rms, aniso


@register_encoder("stain-texture")
class StainTextureEncoder(TileEncoder):
    """Colour-deconvolution, nuclear and texture descriptor of H&E tiles (82 features).

    Deterministic, needs no weights and runs on CPU. Feature names are in
    :attr:`feature_names` and documented one by one in the features guide.

    Parameters
    ----------
    mpp : float, default=0.5
        Microns per pixel of the tiles it will see; converts nuclear areas and
        densities to µm². Extraction passes its own ``mpp``.
    batch_size : int, default=64
        Tiles processed together; bounds the working memory (~60 MB at 64 x 224 px).
    """

    name = "stain-texture"
    version = "1.0"
    dim = len(_NAMES)
    input_size = 224

    def __init__(self, mpp=0.5, batch_size=64):
        self.mpp = mpp
        self.batch_size = batch_size

    @property
    def feature_names(self) -> list[str]:
        """list of str: the 82 feature names, in column order."""
        return list(_NAMES)

    def config(self) -> dict:
        return {**super().config(), "mpp": float(self.mpp)}

    def _encode(self, tiles):
        if not (isinstance(self.mpp, (int, float)) and self.mpp > 0):
            raise ValueError(f"stain-texture: mpp must be a positive number; got {self.mpp!r}.")
        step = max(int(self.batch_size), 1)
        return np.concatenate([self._encode_batch(tiles[i:i + step])
                               for i in range(0, len(tiles), step)])

    def _encode_batch(self, tiles):
        b, height, width, _ = tiles.shape
        n_px = float(height * width)
        px_area = float(self.mpp) ** 2
        # Planar (B, P) channel arrays: (N, 3) @ (3, 3) products are slow in numpy.
        planes = np.ascontiguousarray(tiles.reshape(b, -1, 3).transpose(2, 0, 1))
        red, green, blue = (_OD_LUT[plane] for plane in planes)
        h, e, residual = (_mix(red, green, blue, _STAIN_FROM_OD[:, k]) for k in range(3))
        np.maximum(h, 0, out=h)
        np.maximum(e, 0, out=e)
        od_norm = _mix(red, green, blue, None)
        tissue = od_norm >= _BACKGROUND_OD
        w = tissue.astype(np.float32)
        n_tissue = np.count_nonzero(tissue, axis=1).astype(np.float64)
        dark = np.minimum(np.minimum(red, green), blue) > _DARK_OD
        cols = [1.0 - n_tissue / n_px, np.count_nonzero(dark, axis=1) / n_px]

        def grid(x):
            return x.reshape(b, height, width)

        def sub(x):
            return np.ascontiguousarray(grid(x)[:, ::2, ::2]).reshape(b, -1)

        sub_tissue = sub(tissue)
        for channel in (od_norm, h, e):
            cols += _masked_stats(channel, w, tissue, n_tissue, sub(channel), sub_tissue)
        cols += list(_masked_mean_std(residual, w, n_tissue))
        h_mean, e_mean = cols[2 + 7], cols[2 + 14]
        cols.append(_safe_div(h_mean, h_mean + e_mean))
        cols += [_safe_div(_row_dot(od, w), n_tissue) for od in (red, green, blue)]
        for level in _H_LEVELS:
            cols.append(_safe_div(np.count_nonzero((h >= level) & tissue, axis=1), n_tissue))
        cols += _nuclear_features(h, e, tissue, n_tissue, (b, height, width), px_area)

        # Texture at half resolution (1 µm/px at 20x), the scale of chromatin and
        # nuclear borders, and at quarter resolution for nuclear arrangement.
        h_half, t_half = _pool2(grid(h), grid(tissue))
        h_quarter, t_quarter = _pool2(h_half, t_half)
        for img, msk in ((h_half, t_half), (h_quarter, t_quarter)):
            if img.shape[1] >= 3 and img.shape[2] >= 3:
                cols += list(_lbp_hist(img, msk).T)
            else:
                cols += [np.zeros(b)] * 10
        q = (h_half * (1.0 / _GLCM_STEP)).astype(np.int64)
        np.clip(q, 0, _GLCM_LEVELS - 1, out=q)
        for d in _GLCM_DISTANCES:
            if q.shape[1] > d and q.shape[2] > d:
                cols += _glcm_props(q, t_half, d)
            else:
                cols += [np.zeros(b)] * 5
        weight = grid(w)
        h_rms, h_aniso = _haar(grid(h), weight)
        e_rms, _ = _haar(grid(e), weight)
        cols += h_rms + e_rms + h_aniso
        return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1).astype(np.float32)


def _mix(red, green, blue, weights):
    """``w0 r + w1 g + w2 b`` (or the Euclidean norm when ``weights`` is None), in place."""
    if weights is None:
        out = np.square(red)
        out += np.square(green)
        out += np.square(blue)
        return np.sqrt(out, out=out)
    out = red * weights[0]
    out += green * weights[1]
    out += blue * weights[2]
    return out


def _pool2(img, mask):
    """2 x 2 mean pooling of an image and "all four tissue" pooling of its mask."""
    hh, ww = img.shape[1] // 2 * 2, img.shape[2] // 2 * 2
    img, mask = img[:, :hh, :ww], mask[:, :hh, :ww]
    pooled = (img[:, 0::2, 0::2] + img[:, 0::2, 1::2] + img[:, 1::2, 0::2] + img[:, 1::2, 1::2]) * 0.25
    pooled_mask = mask[:, 0::2, 0::2] & mask[:, 0::2, 1::2] & mask[:, 1::2, 0::2] & mask[:, 1::2, 1::2]
    return pooled, pooled_mask
