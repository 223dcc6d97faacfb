"""Compiled kernels of the ``stain-texture`` encoder (numba; imported on first use).

No Python object per tile or pixel: :func:`encode_kernel` walks a (B, H, W, 3)
uint8 batch once and leaves per-tile sums, histograms, component areas and
co-occurrence counts in the arrays it is given. Per-pixel arithmetic is float32
in the order of the descriptor's first, array formulation (``a * w0 + b * w1 +
c * w2``, left to right; thresholds compared in float32), so thresholds,
histogram bins and connected components fall exactly where they did; sums
are float64, or float32 over one row and float64 across rows where only a
mean is taken. Every function releases the GIL and is cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["encode_kernel"]

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
def encode_kernel(tiles, od_lut, mix, thresholds, riu2, shifts, min_px, large_px, n_levels, sums,
                  hists, lbp, glcm, haar):
    """Reduce a (B, H, W, 3) uint8 batch to per-tile sums and counts, added to the output arrays.

    Inputs: ``od_lut`` (256,) float32 OD per grey level; ``mix`` (3, 3) float32
    OD-to-(H, E, residual) matrix; ``thresholds`` float32: background OD, dark
    OD, the three H levels (the second is the nuclear cut-off), histogram bins
    per OD unit, co-occurrence levels per OD unit; ``riu2`` (256,) LBP bin of
    each code; ``shifts`` (8, 2) LBP neighbour offsets; nuclear area cut-offs
    ``min_px``/``large_px`` in pixels; ``n_levels`` co-occurrence levels.

    Outputs (zeroed by the caller): ``sums`` (B, 26) float64: tissue pixels,
    dark pixels, sums of OD norm, H, E, their squares, residual and its square,
    R/G/B OD, pixels at or above each H level, nuclear pixels, H over nuclei,
    non-nuclear tissue pixels, E over them, then nucleus count, total area,
    area quartiles and area in large nuclei (pixels); ``hists`` (B, 3, bins)
    OD/H/E histograms of every second pixel in both axes; ``lbp`` (B, 2, 10)
    at half and quarter resolution; ``glcm`` (B, 2, levels**2) at distances 1
    and 2; ``haar`` (B, 2, levels, 4) H and E detail energies and weight sums.
    """
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
            _pixel_row(tiles[t, y], od_lut, mix, background, dark_od, nucleus_h, row,
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
