"""Exponential moving average of a network's weights during training."""

from __future__ import annotations

import copy

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """Bias-corrected exponential moving average of a model's parameters.

    After ``t`` updates the average is ``sum_s (1 - decay) decay^(t - s) w_s``
    divided by ``1 - decay^t``: an exactly normalised weighting of the
    iterates, so the initial weights leave no trace however few steps were
    taken.

    Parameters
    ----------
    model : torch.nn.Module
        The network being trained; its parameters are read after each update.
    decay : float
        In (0, 1); the average spans about ``1 / (1 - decay)`` optimiser steps.
    """

    def __init__(self, model, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WeightAverage: decay must be in (0, 1); got {decay!r}.")
        self.decay = float(decay)
        self._model = model
        self._sums = [torch.zeros_like(p, dtype=torch.float32) for p in model.parameters()]
        self._remaining = 1.0  # decay ** updates
        self._shadow = None

    def update(self):
        """Fold the model's current parameters into the average (after ``optimizer.step()``)."""
        with torch.no_grad():
            for total, p in zip(self._sums, self._model.parameters()):
                total.lerp_(p.detach().float(), 1.0 - self.decay)
        self._remaining *= self.decay

    def averaged_model(self):
        """A copy of the model (buffers and mode included) holding the averaged weights.

        The same copy is refreshed and returned on every call.
        """
        if self._remaining == 1.0:
            raise RuntimeError("WeightAverage: no update yet.")
        if self._shadow is None:
            self._shadow = copy.deepcopy(self._model)
        with torch.no_grad():
            for target, total in zip(self._shadow.parameters(), self._sums):
                target.copy_(total / (1.0 - self._remaining))
            for target, source in zip(self._shadow.buffers(), self._model.buffers()):
                target.copy_(source)
        return self._shadow
