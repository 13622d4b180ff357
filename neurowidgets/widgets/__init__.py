"""Thin anywidget front-ends over the core: traits for state, messages for on-demand computation."""

from .neuron_grid import NeuronGrid

__all__ = ["NeuronGrid"]
