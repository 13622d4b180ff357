"""neurowidgets: a live, local Neuronpedia for any PyTorch model, inside Jupyter."""

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
    TextAdapter,
    ablate,
    clamp,
    load_scan,
    scale,
    scan,
    steer,
)

__version__ = "0.1.0"

__all__ = [
    "ActivationTrace",
    "Activations",
    "Capture",
    "Edit",
    "ImageOverlay",
    "LayerError",
    "LayerHealth",
    "LayerInfo",
    "LayerStats",
    "ModelCallError",
    "NeuronGrid",
    "Probe",
    "ScanResult",
    "TextAdapter",
    "TokenHeatmap",
    "TopExamples",
    "ablate",
    "clamp",
    "explore",
    "load_scan",
    "scale",
    "scan",
    "steer",
]


_WIDGETS = ("ActivationTrace", "ImageOverlay", "LayerHealth", "NeuronGrid", "TokenHeatmap", "TopExamples", "explore")


def __getattr__(name: str):
    # Widgets import anywidget and ipywidgets; keep `import neurowidgets` light for core-only use.
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'neurowidgets' has no attribute {name!r}")
