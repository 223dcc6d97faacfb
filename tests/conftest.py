"""Shared fixtures of the lnmkit test suite."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_cohort_dir(tmp_path_factory):
    """A small synthetic cohort (12 patients, seed 7, 2048-px slides) with planted truth.

    Holds pN+, OTC and plain pN0 patients, SVS (40x) and generic TIFF (20x) slides,
    one patient with two slides and planted tumour masks under ``truth/``. Shared by
    the whole session: tests must not modify it.
    """
    from lnmkit.synth import make_cohort

    return make_cohort(tmp_path_factory.mktemp("synthetic_cohort"), n_patients=12, seed=7,
                       slide_size=2048, progress=False)
