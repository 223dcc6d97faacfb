"""``stain-texture``: a hand-crafted H&E tile descriptor that needs no weights.

One compiled pass over the tile batch (``_stain_texture_kernels``, imported on
first use) reduces every tile to sums, histograms and co-occurrence counts; the
82 features are then formed from those for the whole batch with array code.

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
_GLCM_DISTANCES = (1, 2)  # the kernel counts exactly these two (one triple per pixel)
_HAAR_LEVELS = 4

# Thresholds in float32: NumPy compares float32 arrays with Python floats in float32.
_THRESHOLDS = np.array([_BACKGROUND_OD, _DARK_OD, *_H_LEVELS, _HIST_BINS / _HIST_MAX,
                        1.0 / _GLCM_STEP], dtype=np.float32)

# Columns of the per-tile sums the kernel fills (see encode_kernel).
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
    """Percentiles of fixed-range histograms ``counts`` (..., bins): bin centres, 0 when empty."""
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
    # Any size works; 160 px keeps a focus of a few dozen cells a sizeable share of its
    # tile where 224 px dilutes it (measured in the MIL guide, Tile size).
    input_size = 160

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
        from lnmkit.features.encoders._stain_texture_kernels import encode_kernel

        min_px = _min_pixels(_MIN_NUCLEUS_UM2, px_area)
        large_px = _min_pixels(_LARGE_NUCLEUS_UM2, px_area)
        encode_kernel(tiles, _OD_LUT, _STAIN_FROM_OD, _THRESHOLDS, _RIU2, _LBP_SHIFTS, min_px,
                      large_px, _GLCM_LEVELS, sums, hists, lbp, glcm, haar)

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
