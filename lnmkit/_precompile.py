"""Compile lnmkit's numba kernels into their on-disk cache: ``python -m lnmkit._precompile``.

The kernels (the ``stain-texture`` encoder, the Efron likelihood and Dxy counts of
bootstrap validation) are compiled on first use and cached next to their modules, so
only the first call after an install pays for it (about 15-20 s on one core). The
project's ``make install`` runs this module once, as a compiled extension is built at
install time; on a read-only install point ``NUMBA_CACHE_DIR`` at a writable folder.
"""

from __future__ import annotations

import numpy as np


def compile_kernels():
    """Call every kernel once on a tiny input, which compiles and caches it."""
    from lnmkit.features.encoders._stain_texture import StainTextureEncoder
    from lnmkit.nomogram._indices import cox_dxy
    from lnmkit.nomogram._newton import EfronTies

    tiles = np.random.default_rng(0).integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
    StainTextureEncoder().encode(tiles)
    time, event = np.array([1.0, 2.0, 2.0, 3.0]), np.array([1, 0, 1, 0])
    ties = EfronTies(time, event)
    ties.objective(np.eye(4)[:, :2])(np.zeros(2))
    ties.loglik(np.zeros(4))
    cox_dxy(np.arange(4.0), time, event)


if __name__ == "__main__":
    compile_kernels()
