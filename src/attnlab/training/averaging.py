"""Weight averaging: an exponential moving average (EMA) of the weights, for evaluation and the run's weights.

After optimiser step t the average follows

    m_t = β · m_{t−1} + (1 − β) · θ_t,    m_0 = 0
    θ̄_t = m_t / (1 − β^t)

The division removes the pull toward m_0 = 0 (as Adam does for its moments), so θ̄_t is a
weighted mean of the weights after steps 1 … t, with weights (1 − β) · β^(t−i) / (1 − β^t):
recent steps weigh most, and nothing is left of the random initialisation. 1 / (1 − β) steps
is the average's horizon (β = 0.995: about the last 200 steps).

With ``TrainConfig(average="ema")`` the trainer updates the average after every step, evaluates
with it (dev and test), writes it as the run's ``model.safetensors``, and keeps ``m_t`` and ``t``
in each checkpoint (``average.safetensors``), so a resumed run continues it bit for bit.

    >>> average = WeightAverage(model, decay=0.995)
    >>> average.update(model)                   # after each optimizer.step()
    >>> averaged = average.averaged_model(model)  # a copy of model carrying θ̄_t
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["AVERAGES", "AVERAGE_FILE", "WeightAverage"]

AVERAGES = ("none", "ema")
AVERAGE_FILE = "average.safetensors"  # the average's state inside a checkpoint directory
_COUNT_KEY = "__num_updates__"


class WeightAverage:
    """The bias-corrected EMA of a model's parameters (see the module docstring for the formula)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.num_updates = 0
        # tied parameters appear once in named_parameters(), so they are averaged once
        self.moments = {name: torch.zeros_like(param, memory_format=torch.contiguous_format)
                        for name, param in model.named_parameters()}
        self._averaged: nn.Module | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """m ← β · m + (1 − β) · θ for every parameter θ of ``model``; call after each optimiser step."""
        self.num_updates += 1
        for name, param in model.named_parameters():
            self.moments[name].mul_(self.decay).add_(param.detach(), alpha=1.0 - self.decay)

    def weights(self) -> dict[str, torch.Tensor]:
        """θ̄ = m / (1 − β^t), by parameter name."""
        if self.num_updates == 0:
            raise ValueError("no weights averaged yet: call update() after an optimiser step")
        correction = 1.0 - self.decay ** self.num_updates
        return {name: moment / correction for name, moment in self.moments.items()}

    @torch.no_grad()
    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` (made once, then refreshed) with the averaged parameters and ``model``'s buffers."""
        if self._averaged is None:
            self._averaged = copy.deepcopy(model)
        averaged = self.weights()
        for name, param in self._averaged.named_parameters():
            param.copy_(averaged[name])
        for (name, buffer), (_, source) in zip(self._averaged.named_buffers(), model.named_buffers()):
            buffer.copy_(source)
        return self._averaged

    def state_dict(self) -> dict[str, torch.Tensor]:
        """m_t by parameter name, and t: the tensors a checkpoint keeps."""
        state = {name: moment.detach().contiguous().cpu() for name, moment in self.moments.items()}
        state[_COUNT_KEY] = torch.tensor(self.num_updates, dtype=torch.int64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        names = set(state) - {_COUNT_KEY}
        if names != set(self.moments) or _COUNT_KEY not in state:
            missing, unexpected = sorted(set(self.moments) - names), sorted(names - set(self.moments))
            raise ValueError(f"weight average does not match the model: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        with torch.no_grad():
            for name, moment in self.moments.items():
                moment.copy_(state[name])
        self.num_updates = int(state[_COUNT_KEY])
