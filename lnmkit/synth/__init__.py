"""Synthetic multimodal cohorts with planted ground truth, for demos and tests."""

from lnmkit.synth._slide_file import write_slide

__all__ = ["write_slide"]
