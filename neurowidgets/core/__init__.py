"""The core: models, tensors and statistics. Knows nothing about widgets."""

from .activations import Activations
from .attention import AttentionPatterns, attention_patterns
from .distributed import ShardError
from .edits import Edit, ablate, clamp, scale, steer
from .health import health_table
from .lm import logit_lens, top_logits
from .probe import Capture, LayerError, LayerInfo, ModelCallError, Probe
from .reading import direct_logit_attribution
from .scan import ScanResult, load_scan, scan
from .stats import LayerStats
from .text import TextAdapter
from .token_units import units_at_token

__all__ = [
    "Activations",
    "AttentionPatterns",
    "Capture",
    "Edit",
    "LayerError",
    "LayerInfo",
    "LayerStats",
    "ModelCallError",
    "Probe",
    "ScanResult",
    "ShardError",
    "TextAdapter",
    "ablate",
    "attention_patterns",
    "clamp",
    "direct_logit_attribution",
    "health_table",
    "load_scan",
    "logit_lens",
    "scale",
    "scan",
    "steer",
    "top_logits",
    "units_at_token",
]
