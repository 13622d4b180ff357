"""Thin anywidget front-ends over the core: traits for state, messages for on-demand computation."""

from .activation_trace import ActivationTrace
from .neuron_grid import NeuronGrid

__all__ = ["ActivationTrace", "NeuronGrid"]
