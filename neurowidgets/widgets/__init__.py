"""Thin anywidget front-ends over the core: traits for state, messages for on-demand computation."""

from .activation_trace import ActivationTrace
from .explorer import ImageExplorer, TensorExplorer, TextExplorer, explore
from .image_overlay import ImageOverlay
from .layer_health import LayerHealth
from .neuron_grid import NeuronGrid
from .token_heatmap import TokenHeatmap
from .top_examples import TopExamples

__all__ = [
    "ActivationTrace",
    "ImageExplorer",
    "ImageOverlay",
    "LayerHealth",
    "NeuronGrid",
    "TensorExplorer",
    "TextExplorer",
    "TokenHeatmap",
    "TopExamples",
    "explore",
]
