"""``stain-texture``: a hand-crafted H&E tile descriptor that needs no weights.

One compiled pass over the tile batch (numba, no Python object per tile or
pixel) reduces every tile to sums, histograms and co-occurrence counts; the 82
features are then formed from those for the whole batch with array code. The
per-pixel arithmetic is float32 in the order of the original array
formulation, so thresholds and histogram bins fall exactly where they did;
sums are accumulated in float64.

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
  nuclei are 4-connected components at H >= 0.35 larger than 8 µm².
"""

from __future__ import annotations

import numba
import numpy as np

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

# Per-channel lookup tables, float32 (256,) each: the OD and its products with
# the stain matrix columns (H, E, residual) and with itself. ``lut[I] * w`` is
# rounded to float32 exactly as the product computed per pixel would be.
_LUTS = np.stack(
    [_OD_LUT]
    + [_OD_LUT * _STAIN_FROM_OD[channel, stain] for stain in range(3) for channel in range(3)]
    + [np.square(_OD_LUT)]
).astype(np.float32)
# Thresholds in float32: NumPy compares float32 arrays with Python floats in float32.
_THRESHOLDS = np.array([_BACKGROUND_OD, _DARK_OD, *_H_LEVELS, _HIST_BINS / _HIST_MAX,
                        1.0 / _GLCM_STEP], dtype=np.float32)

# Columns of the per-tile sums the kernel returns.
_S_TISSUE, _S_DARK, _S_SUM, _S_SQ, _S_RES, _S_RGB, _S_LEVELS, _S_NUC = 0, 1, 2, 5, 8, 10, 13, 16
_N_SUMS = 26


def _riu2_lut():
    """Map 8-bit LBP codes to rotation-invariant uniform bins 0..9 (Ojala et al. 2002)."""
    lut = np.empty(256, dtype=np.int64)
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        lut[code] = sum(bits) if transitions <= 2 else 9
    return lut


_RIU2 = _riu2_lut()
# Neighbour offsets (dy, dx) from the top-left of each 3 x 3 window, bit 0 first.
_LBP_SHIFTS = np.array([(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)],
                       dtype=np.int64)


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

_JIT = {"nogil": True, "cache": True, "fastmath": False, "error_model": "numpy"}


# ------------------------------------------------------------------------ compiled kernels

@numba.njit(**_JIT)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


@numba.njit(**_JIT)
def _nuclei(nuclei, width, parent, area, index, min_px, large_px, out):
    """Label 4-connected components of ``nuclei`` (flat, row-major) and summarise their areas.

    ``out`` receives count, total area, area quartiles (25, 50, 75: the
    ``floor(q (n - 1))``-th smallest) and area in components of at least
    ``large_px`` pixels, all in pixels, over components of at least ``min_px``.
    ``parent`` and ``index`` are scratch; ``area`` is zero on entry and on exit.
    """
    n = 0
    for i in range(nuclei.shape[0]):
        if nuclei[i]:
            index[n] = i
            n += 1
    for k in range(n):
        i = index[k]
        parent[i] = i
        if i % width > 0 and nuclei[i - 1]:
            parent[i] = _find(parent, i - 1)
        if i >= width and nuclei[i - width]:
            up = _find(parent, i - width)
            own = _find(parent, i)
            if up < own:
                parent[own] = up
            elif own < up:
                parent[up] = own
    for k in range(n):
        area[_find(parent, index[k])] += 1
    count = 0
    for k in range(n):
        if area[index[k]] >= min_px:
            count += 1
    kept = np.empty(count, dtype=np.int64)
    j, total, large = 0, 0, 0
    for k in range(n):
        i = index[k]
        size = area[i]
        if size >= min_px:
            kept[j] = size
            j += 1
            total += size
            if size >= large_px:
                large += size
        area[i] = 0
    kept.sort()
    out[0], out[1], out[5] = count, total, large
    for j, q in enumerate((0.25, 0.5, 0.75)):
        out[2 + j] = kept[int(np.floor(q * max(count - 1, 0)))] if count > 0 else 0.0


@numba.njit(**_JIT)
def _pool2(img, mask, out_img, out_mask):
    """2 x 2 mean pooling of an image and "all four tissue" pooling of its mask."""
    quarter = np.float32(0.25)
    for y in range(out_img.shape[0]):
        for x in range(out_img.shape[1]):
            y2, x2 = 2 * y, 2 * x
            out_img[y, x] = (img[y2, x2] + img[y2, x2 + 1] + img[y2 + 1, x2]
                             + img[y2 + 1, x2 + 1]) * quarter
            out_mask[y, x] = (mask[y2, x2] & mask[y2, x2 + 1] & mask[y2 + 1, x2]
                              & mask[y2 + 1, x2 + 1])


@numba.njit(**_JIT)
def _lbp_counts(img, mask, riu2, shifts, out):
    """Counts of rotation-invariant uniform LBP(8, 1) bins over interior ``mask`` pixels."""
    inner = img.shape[1] - 2
    code = np.empty(inner, dtype=np.uint8)
    for y in range(img.shape[0] - 2):
        centre = img[y + 1, 1:inner + 1]
        code[:] = 0
        for bit in range(8):
            neighbour = img[y + shifts[bit, 0], shifts[bit, 1]:shifts[bit, 1] + inner]
            for x in range(inner):
                code[x] |= np.uint8(neighbour[x] >= centre[x]) << np.uint8(bit)
        row_mask = mask[y + 1]
        for x in range(inner):
            if row_mask[x + 1]:
                out[riu2[code[x]]] += 1


@numba.njit(**_JIT)
def _glcm_counts(q, mask, levels, out):
    """Co-occurrence counts of horizontal plus vertical pairs at distances 1 and 2.

    ``out`` (2, levels**2) receives at ``[d - 1, a * levels + b]`` the number of
    pairs (a above or left of b) at distance d with both pixels in ``mask``; the
    matrices are not yet symmetric. Pixels outside ``mask`` or the image take
    the extra level ``levels``; one count per pixel and direction of the triple
    (a, b, c) at offsets 0, 1, 2 gives both distances, pairs with the extra
    level are dropped after.
    """
    height, width = q.shape
    n = levels + 1
    code = np.full((height + 2, width + 2), levels, dtype=np.int64)
    for y in range(height):
        for x in range(width):
            if mask[y, x]:
                code[y, x] = q[y, x]
    triples = np.zeros((2, n * n * n), dtype=np.int64)
    for y in range(height):
        for x in range(width):
            a = code[y, x] * n
            triples[0, (a + code[y, x + 1]) * n + code[y, x + 2]] += 1
            triples[1, (a + code[y + 1, x]) * n + code[y + 2, x]] += 1
    for direction in range(2):
        for a in range(levels):
            for b in range(n):
                for c in range(n):
                    count = triples[direction, (a * n + b) * n + c]
                    if b < levels:
                        out[0, a * levels + b] += count
                    if c < levels:
                        out[1, a * levels + c] += count


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"}, error_model="numpy")
def _haar_level(h, e, weight, h_next, e_next, w_next, out_h, out_e):
    """One orthonormal Haar level of H and E: tissue-weighted detail energies, next approximations.

    ``out_*`` receive the weighted sums of squared vertical, horizontal and
    diagonal details (before the 1/4 of the filters) and the weight sum.
    Reassociated float arithmetic (so that it vectorises): these energies feed
    no threshold.
    """
    quarter, zero = np.float32(0.25), np.float32(0.0)
    totals = np.zeros(7)
    for y in range(h_next.shape[0]):
        hv = hh = hd = ev = eh = ed = wsum = zero
        for x in range(h_next.shape[1]):
            y2, x2 = 2 * y, 2 * x
            w = (weight[y2, x2] + weight[y2, x2 + 1] + weight[y2 + 1, x2]
                 + weight[y2 + 1, x2 + 1]) * quarter
            a, b, c, d = h[y2, x2], h[y2, x2 + 1], h[y2 + 1, x2], h[y2 + 1, x2 + 1]
            vertical, horizontal, diagonal = (a + b) - (c + d), (a - b) + (c - d), (a - b) - (c - d)
            hv += vertical * vertical * w
            hh += horizontal * horizontal * w
            hd += diagonal * diagonal * w
            h_next[y, x] = (a + b + c + d) * quarter
            a, b, c, d = e[y2, x2], e[y2, x2 + 1], e[y2 + 1, x2], e[y2 + 1, x2 + 1]
            vertical, horizontal, diagonal = (a + b) - (c + d), (a - b) + (c - d), (a - b) - (c - d)
            ev += vertical * vertical * w
            eh += horizontal * horizontal * w
            ed += diagonal * diagonal * w
            e_next[y, x] = (a + b + c + d) * quarter
            w_next[y, x] = w
            wsum += w
        # Row sums are float32 (a few hundred terms), the totals float64.
        for k, value in enumerate((hv, hh, hd, ev, eh, ed, wsum)):
            totals[k] += value
    out_h[0], out_h[1], out_h[2], out_h[3] = totals[0], totals[1], totals[2], totals[6]
    out_e[0], out_e[1], out_e[2], out_e[3] = totals[3], totals[4], totals[5], totals[6]


@numba.njit(**_JIT)
def _haar(h, e, weight, out_h, out_e):
    """Detail energies of Haar levels of H and E (H, W) into ``out_*`` (levels, 4)."""
    for level in range(out_h.shape[0]):
        height, width = h.shape[0] // 2, h.shape[1] // 2
        if height < 1 or width < 1:
            break
        h_next = np.empty((height, width), dtype=np.float32)
        e_next = np.empty((height, width), dtype=np.float32)
        w_next = np.empty((height, width), dtype=np.float32)
        _haar_level(h, e, weight, h_next, e_next, w_next, out_h[level], out_e[level])
        h, e, weight = h_next, e_next, w_next


@numba.njit(**_JIT)
def _pixel_row(rgb, od_lut, mix, background, dark_od, nucleus_h, row, h_out, e_out, tissue,
               weight, nuclei):
    """Per-pixel values of one image row, float32 in the array formulation's order.

    ``row`` receives OD norm, residual, the three channel ODs and the dark flag
    (rows 0-5); H and E go to ``h_out``/``e_out``, the masks to the others.
    """
    width = rgb.shape[0]
    for x in range(width):
        row[2, x] = od_lut[rgb[x, 0]]
        row[3, x] = od_lut[rgb[x, 1]]
        row[4, x] = od_lut[rgb[x, 2]]
    h0, h1, h2 = mix[0, 0], mix[1, 0], mix[2, 0]
    e0, e1, e2 = mix[0, 1], mix[1, 1], mix[2, 1]
    r0, r1, r2 = mix[0, 2], mix[1, 2], mix[2, 2]
    zero, one = np.float32(0.0), np.float32(1.0)
    for x in range(width):
        red, green, blue = row[2, x], row[3, x], row[4, x]
        h = max(red * h0 + green * h1 + blue * h2, zero)
        e = max(red * e0 + green * e1 + blue * e2, zero)
        row[1, x] = red * r0 + green * r1 + blue * r2
        od = np.sqrt(red * red + green * green + blue * blue)
        row[0, x] = od
        row[5, x] = one if min(min(red, green), blue) > dark_od else zero
        is_tissue = od >= background
        h_out[x], e_out[x] = h, e
        tissue[x] = is_tissue
        weight[x] = one if is_tissue else zero
        nuclei[x] = is_tissue and h >= nucleus_h


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"}, error_model="numpy")
def _row_sums(row, h, e, weight, nuclei, level0, level1, level2, s):
    """Add one row's tissue sums to ``s`` (reassociated, so that it vectorises).

    Counts and means-only sums of the row (a few hundred terms) are float32,
    then added to float64 totals; sums and sums of squares of the values whose
    standard deviation is taken are float64 throughout (one-pass variance).
    """
    zero = np.float32(0.0)
    n_tissue = n_dark = n_nuc = n0 = n1 = n2 = zero
    r_sum = g_sum = b_sum = h_nuc = e_out = zero
    od_sum = h_sum = e_sum = res_sum = od_sq = h_sq = e_sq = res_sq = 0.0
    for x in range(h.shape[0]):
        w = weight[x]
        od, hv, ev, res = row[0, x] * w, h[x] * w, e[x] * w, row[1, x] * w
        n_tissue += w
        n_dark += row[5, x]
        od64, h64, e64, res64 = np.float64(od), np.float64(hv), np.float64(ev), np.float64(res)
        od_sum += od64
        h_sum += h64
        e_sum += e64
        res_sum += res64
        od_sq += od64 * od64
        h_sq += h64 * h64
        e_sq += e64 * e64
        res_sq += res64 * res64
        r_sum += row[2, x] * w
        g_sum += row[3, x] * w
        b_sum += row[4, x] * w
        n0 += w if h[x] >= level0 else zero
        n1 += w if h[x] >= level1 else zero
        n2 += w if h[x] >= level2 else zero
        nuc = np.float32(1.0) if nuclei[x] else zero
        n_nuc += nuc
        h_nuc += hv * nuc
        e_out += ev - ev * nuc
    s[0] += n_tissue
    s[1] += n_dark
    s[2] += od_sum
    s[3] += h_sum
    s[4] += e_sum
    s[5] += od_sq
    s[6] += h_sq
    s[7] += e_sq
    s[8] += res_sum
    s[9] += res_sq
    s[10] += r_sum
    s[11] += g_sum
    s[12] += b_sum
    s[13] += n0
    s[14] += n1
    s[15] += n2
    s[16] += n_nuc
    s[17] += h_nuc
    s[18] += n_tissue - n_nuc
    s[19] += e_out


@numba.njit(**_JIT)
def _encode_kernel(tiles, luts, mix, thresholds, riu2, shifts, min_px, large_px, n_levels, sums, hists,
                   lbp, glcm, haar):
    """Per-tile sums, histograms and counts of a (B, H, W, 3) uint8 batch; see ``_encode_batch``."""
    n_tiles, height, width = tiles.shape[0], tiles.shape[1], tiles.shape[2]
    background, dark_od = thresholds[0], thresholds[1]
    h_levels0, h_levels1, h_levels2 = thresholds[2], thresholds[3], thresholds[4]
    nucleus_h, hist_scale, glcm_scale = thresholds[3], thresholds[5], thresholds[6]
    n_bins = hists.shape[2]
    h_img = np.empty((height, width), dtype=np.float32)
    e_img = np.empty((height, width), dtype=np.float32)
    weight = np.empty((height, width), dtype=np.float32)
    tissue = np.empty((height, width), dtype=np.bool_)
    nuclei = np.empty(height * width, dtype=np.bool_)
    parent = np.empty(height * width, dtype=np.int64)
    index = np.empty(height * width, dtype=np.int64)
    area = np.zeros(height * width, dtype=np.int64)
    h2, w2 = height // 2, width // 2
    h_half = np.empty((h2, w2), dtype=np.float32)
    t_half = np.empty((h2, w2), dtype=np.bool_)
    h_quarter = np.empty((h2 // 2, w2 // 2), dtype=np.float32)
    t_quarter = np.empty((h2 // 2, w2 // 2), dtype=np.bool_)
    q = np.empty((h2, w2), dtype=np.int64)
    row = np.empty((7, width), dtype=np.float32)
    for t in range(n_tiles):
        s = sums[t]
        for y in range(height):
            _pixel_row(tiles[t, y], luts, mix, background, dark_od, nucleus_h, row,
                       h_img[y], e_img[y], tissue[y], weight[y], nuclei[y * width:(y + 1) * width])
            _row_sums(row, h_img[y], e_img[y], weight[y], nuclei[y * width:(y + 1) * width],
                      h_levels0, h_levels1, h_levels2, s)
            if y % 2 == 0:
                for x in range(0, width, 2):
                    if tissue[y, x]:
                        hists[t, 0, min(max(np.int64(row[0, x] * hist_scale), 0), n_bins - 1)] += 1
                        hists[t, 1, min(max(np.int64(h_img[y, x] * hist_scale), 0), n_bins - 1)] += 1
                        hists[t, 2, min(max(np.int64(e_img[y, x] * hist_scale), 0), n_bins - 1)] += 1
        _nuclei(nuclei, width, parent, area, index, min_px, large_px, s[20:26])
        if h2 >= 1 and w2 >= 1:
            _pool2(h_img, tissue, h_half, t_half)
            if h2 >= 3 and w2 >= 3:
                _lbp_counts(h_half, t_half, riu2, shifts, lbp[t, 0])
            for y in range(h2):
                for x in range(w2):
                    q[y, x] = min(max(np.int64(h_half[y, x] * glcm_scale), 0), n_levels - 1)
            _glcm_counts(q, t_half, n_levels, glcm[t])
            for k in range(glcm.shape[1]):
                if h2 <= k + 1 or w2 <= k + 1:
                    glcm[t, k] = 0
            if h2 >= 2 and w2 >= 2:
                _pool2(h_half, t_half, h_quarter, t_quarter)
                if h2 // 2 >= 3 and w2 // 2 >= 3:
                    _lbp_counts(h_quarter, t_quarter, riu2, shifts, lbp[t, 1])
        _haar(h_img, e_img, weight, haar[t, 0], haar[t, 1])


# ------------------------------------------------------------------------ array post-processing

def _safe_div(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _min_pixels(area_um2, px_area):
    """Smallest whole number of pixels ``n >= 1`` with ``n * px_area >= area_um2`` in float64."""
    n = max(int(np.ceil(area_um2 / px_area)), 1)
    while n > 1 and (n - 1) * px_area >= area_um2:
        n -= 1
    while n * px_area < area_um2:
        n += 1
    return n


def _mean_std(total, squares, n):
    mean = _safe_div(total, n)
    return mean, np.sqrt(np.maximum(_safe_div(squares, n) - mean * mean, 0.0))


def _percentiles(counts):
    """Percentiles of the fixed-range histograms ``counts`` (..., bins): bin centres, 0 when empty."""
    cum = np.cumsum(counts, axis=-1)
    n = cum[..., -1:]
    width = _HIST_MAX / _HIST_BINS
    out = [np.where(n[..., 0] > 0, (np.minimum((cum < (q / 100.0) * n).sum(-1), _HIST_BINS - 1)
                                    + 0.5) * width, 0.0) for q in _PERCENTILES]
    return np.stack(out, axis=-1)


def _glcm_properties(counts):
    """Haralick properties of symmetric co-occurrence matrices from counts (B, levels**2).

    Returns contrast, homogeneity, energy (sqrt of ASM, as scikit-image),
    correlation and entropy, each of shape (B,).
    """
    b, levels = counts.shape[0], _GLCM_LEVELS
    p = counts.reshape(b, levels, levels).astype(np.float64)
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


@register_encoder("stain-texture")
class StainTextureEncoder(TileEncoder):
    """Colour-deconvolution, nuclear and texture descriptor of H&E tiles (82 features).

    Deterministic, needs no weights and runs on CPU in one compiled pass over
    the batch that releases the GIL (so tile reading overlaps it). Feature names
    are in :attr:`feature_names` and documented one by one in the features guide.

    Parameters
    ----------
    mpp : float, default=0.5
        Microns per pixel of the tiles it will see; converts nuclear areas and
        densities to µm². Extraction passes its own ``mpp``.
    batch_size : int, default=64
        Tiles per kernel call. Working memory is a few tile-sized buffers
        whatever the batch; the results do not depend on it.
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
        sums = np.zeros((b, _N_SUMS))
        hists = np.zeros((b, 3, _HIST_BINS), dtype=np.int64)
        lbp = np.zeros((b, 2, 10), dtype=np.int64)
        glcm = np.zeros((b, len(_GLCM_DISTANCES), _GLCM_LEVELS ** 2), dtype=np.int64)
        haar = np.zeros((b, 2, _HAAR_LEVELS, 4))
        _encode_kernel(tiles, _OD_LUT, _STAIN_FROM_OD, _THRESHOLDS, _RIU2, _LBP_SHIFTS,
                       _min_pixels(_MIN_NUCLEUS_UM2, px_area), _min_pixels(_LARGE_NUCLEUS_UM2, px_area),
                       _GLCM_LEVELS, sums, hists, lbp, glcm, haar)

        n_tissue = sums[:, _S_TISSUE]
        cols = [1.0 - n_tissue / n_px, sums[:, _S_DARK] / n_px]
        percentiles = _percentiles(hists)
        means = []
        for k in range(3):
            mean, std = _mean_std(sums[:, _S_SUM + k], sums[:, _S_SQ + k], n_tissue)
            means.append(mean)
            cols += [mean, std, *percentiles[:, k].T]
        cols += list(_mean_std(sums[:, _S_RES], sums[:, _S_RES + 1], n_tissue))
        cols.append(_safe_div(means[1], means[1] + means[2]))
        cols += [_safe_div(sums[:, _S_RGB + k], n_tissue) for k in range(3)]
        cols += [_safe_div(sums[:, _S_LEVELS + k], n_tissue) for k in range(3)]

        n_nuc, h_in, n_out, e_out, count, area, q25, q50, q75, large = sums[:, _S_NUC:].T
        cols += [_safe_div(count * 1e4, n_tissue * px_area), _safe_div(area * px_area, count),
                 q25 * px_area, q50 * px_area, q75 * px_area, _safe_div(large, area),
                 _safe_div(h_in, n_nuc), _safe_div(e_out, n_out)]

        # Texture at half resolution (1 µm/px at 20x), the scale of chromatin and
        # nuclear borders, and at quarter resolution for nuclear arrangement.
        for scale in range(2):
            cols += list(_safe_div(lbp[:, scale], lbp[:, scale].sum(1, keepdims=True)).T)
        for k in range(len(_GLCM_DISTANCES)):
            cols += _glcm_properties(glcm[:, k])
        # The 1/2 of the orthonormal Haar filters is folded into the 0.25 below.
        ev, eh, ed, wsum = (haar[..., k] for k in range(4))
        ev, eh, ed = (_safe_div(energy * 0.25, wsum) for energy in (ev, eh, ed))
        rms = np.sqrt(ev + eh + ed)
        aniso = _safe_div(np.abs(ev - eh), ev + eh)
        cols += list(rms[:, 0].T) + list(rms[:, 1].T) + list(aniso[:, 0].T)
        return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1).astype(np.float32)
