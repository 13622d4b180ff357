"""The core: models, tensors and statistics. Knows nothing about widgets."""

from .activations import Activations
from .edits import Edit, ablate, clamp, scale, steer
from .probe import Capture, LayerError, LayerInfo, ModelCallError, Probe

__all__ = [
    "Activations",
    "Capture",
    "Edit",
    "LayerError",
    "LayerInfo",
    "ModelCallError",
    "Probe",
    "ablate",
    "clamp",
    "scale",
    "steer",
]
