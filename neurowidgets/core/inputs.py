"""Feeding inputs to a model the natural way, on the model's device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def to_device(inputs: Any, device: torch.device | None) -> Any:
    """Move every tensor inside ``inputs`` (tensor, tuple/list, mapping) to ``device``."""
    if device is None:
        return inputs
    if isinstance(inputs, torch.Tensor):
        return inputs if inputs.device == device else inputs.to(device)
    if isinstance(inputs, Mapping):
        return {k: to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_device(v, device) for v in inputs)
    return inputs


def call_model(model: torch.nn.Module, inputs: Any, options: Mapping[str, Any] | None = None) -> Any:
    """A tensor is passed as ``model(x)``, a tuple as ``model(*x)``, a mapping as ``model(**x)``;
    ``options`` are added as keywords where ``inputs`` does not set them."""
    options = options or {}
    if isinstance(inputs, Mapping):
        return model(**{**options, **inputs})
    if isinstance(inputs, tuple):
        return model(*inputs, **options)
    return model(inputs, **options)


def batch_size(inputs: Any) -> int:
    """The leading dimension of the first tensor found in ``inputs``."""
    tensor = first_tensor(inputs)
    if tensor is None or tensor.ndim == 0:
        raise ValueError(f"cannot find a batch dimension in inputs of type {type(inputs).__name__}")
    return int(tensor.shape[0])


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a tensor, tuple/list, mapping or model-output object (``None`` if none)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    elif hasattr(value, "to_tuple"):  # transformers' ModelOutput
        value = value.to_tuple()
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def describe(inputs: Any) -> str:
    """A short text for an error message: the shapes and dtypes of the tensors in ``inputs``."""
    if isinstance(inputs, torch.Tensor):
        return f"tensor{tuple(inputs.shape)} {str(inputs.dtype).removeprefix('torch.')}"
    if isinstance(inputs, Mapping):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in inputs) + ")"
    return type(inputs).__name__
