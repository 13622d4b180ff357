"""Thin anywidget front-ends over the core: traits for state, messages for on-demand computation."""

from .activation_trace import ActivationTrace
from .attention import AttentionHeads
from .coactivation import CoActivation
from .distributions import Distributions
from .explorer import ImageExplorer, TensorExplorer, TextExplorer, explore
from .image_overlay import ImageOverlay
from .interventions import Interventions
from .layer_health import LayerHealth
from .logit_lens import LogitLens
from .neuron_grid import NeuronGrid
from .token_heatmap import TokenHeatmap
from .top_examples import TopExamples

__all__ = [
    "ActivationTrace",
    "AttentionHeads",
    "CoActivation",
    "Distributions",
    "ImageExplorer",
    "ImageOverlay",
    "Interventions",
    "LayerHealth",
    "LogitLens",
    "NeuronGrid",
    "TensorExplorer",
    "TextExplorer",
    "TokenHeatmap",
    "TopExamples",
    "explore",
]
