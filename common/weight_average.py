"""An exponential moving average of a model's trained weights (``--weight_average``).

Averaging the weights of the last few thousand steps is a cheap convergence aid: it smooths the
noise of the last steps' updates at no cost per step beyond one lerp per parameter. The loop
validates the average beside the weights; ``scripts/export_model.py --ema`` ships it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``average <- decay * average + (1 - decay) * weights`` over ``params`` after each step."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter], decay: float):
        ids = {id(p) for p in params}
        self.model, self.decay = model, decay
        self.values = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in ids}

    @torch.no_grad()
    def update(self) -> None:
        params = dict(self.model.named_parameters())
        for n, average in self.values.items():
            average.lerp_(params[n].detach(), 1 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: v.detach().cpu().clone() for n, v in self.values.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for n, v in state.items():
            self.values[n].copy_(v)

    def averaged_model(self) -> nn.Module:
        """A copy of the model holding the average (for validation)."""
        model = copy.deepcopy(self.model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, v in self.values.items():
                params[n].copy_(v)
        return model
