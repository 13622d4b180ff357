"""The core: models, tensors and statistics. Knows nothing about widgets."""

from .activations import Activations
from .edits import Edit, ablate, clamp, scale, steer
from .probe import Capture, LayerError, LayerInfo, ModelCallError, Probe
from .scan import ScanResult, load_scan, scan
from .stats import LayerStats
from .text import TextAdapter

__all__ = [
    "Activations",
    "Capture",
    "Edit",
    "LayerError",
    "LayerInfo",
    "LayerStats",
    "ModelCallError",
    "Probe",
    "ScanResult",
    "TextAdapter",
    "ablate",
    "clamp",
    "load_scan",
    "scale",
    "scan",
    "steer",
]
