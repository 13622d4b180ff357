"""neurowidgets: a live, local Neuronpedia for any PyTorch model, inside Jupyter."""

from .core import (
    Activations,
    Capture,
    Edit,
    LayerError,
    LayerInfo,
    ModelCallError,
    Probe,
    ablate,
    clamp,
    scale,
    steer,
)

__version__ = "0.1.0"

__all__ = [
    "Activations",
    "Capture",
    "Edit",
    "LayerError",
    "LayerInfo",
    "ModelCallError",
    "NeuronGrid",
    "Probe",
    "ablate",
    "clamp",
    "scale",
    "steer",
]


def __getattr__(name: str):
    # Widgets import anywidget and ipywidgets; keep `import neurowidgets` light for core-only use.
    if name == "NeuronGrid":
        from .widgets import NeuronGrid

        return NeuronGrid
    raise AttributeError(f"module 'neurowidgets' has no attribute {name!r}")
