"""neurowidgets: a live, local Neuronpedia for any PyTorch model, inside Jupyter."""

import importlib

from .core import (
    Activations,
    Capture,
    Edit,
    LayerError,
    LayerInfo,
    LayerStats,
    ModelCallError,
    Probe,
    ScanResult,
    ShardError,
    TextAdapter,
    ablate,
    attention_patterns,
    clamp,
    direct_logit_attribution,
    load_scan,
    logit_lens,
    scale,
    scan,
    steer,
    top_logits,
    units_at_token,
)
from .core.attribution import attribute
from .core.visualize import visualize

__version__ = "0.1.0"

__all__ = [
    "ActivationTrace",
    "Activations",
    "AttentionHeads",
    "Capture",
    "CoActivation",
    "Distributions",
    "Edit",
    "ImageOverlay",
    "Interventions",
    "LayerError",
    "LayerHealth",
    "LayerInfo",
    "LayerStats",
    "LogitLens",
    "ModelCallError",
    "NeuronGrid",
    "Probe",
    "ScanResult",
    "ShardError",
    "TextAdapter",
    "TokenHeatmap",
    "TopExamples",
    "ablate",
    "attention_patterns",
    "attribute",
    "clamp",
    "direct_logit_attribution",
    "explore",
    "export_html",
    "load_scan",
    "logit_lens",
    "report",
    "scale",
    "scan",
    "steer",
    "top_logits",
    "units_at_token",
    "visualize",
]


_WIDGETS = (
    "ActivationTrace", "AttentionHeads", "CoActivation", "Distributions", "ImageOverlay", "Interventions",
    "LayerHealth", "LogitLens", "NeuronGrid", "TokenHeatmap", "TopExamples", "explore",
)  # fmt: skip


def __getattr__(name: str):
    # Widgets (and the report, which draws with them) import anywidget, ipywidgets and bokeh: keep
    # `import neurowidgets` light for core-only use.
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    if name == "report":
        from .reporting import report

        return report
    if name == "export_html":  # needs nbconvert: a notebook as HTML whose widgets draw offline
        from .export import export_html

        return export_html
    if name == "datasets":  # the embedded digits CNN and data: `nw.datasets.digits()`
        return importlib.import_module(f"{__name__}.datasets")
    raise AttributeError(f"module 'neurowidgets' has no attribute {name!r}")
