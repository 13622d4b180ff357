"""A layer that fails on some data only: what a model that breaks on one example of the sample looks like."""

from __future__ import annotations

import torch


class Refuses(torch.nn.Module):
    """The identity, except that while ``armed`` an input with a value beyond 100 raises "activation too
    large". The background's twin is a copy: after changing ``armed``, ``background.forget`` the probe."""

    def __init__(self, armed: bool = True):
        super().__init__()
        self.armed = armed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed and x.abs().max() > 100:
            raise RuntimeError("activation too large")
        return x
