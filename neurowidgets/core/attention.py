"""Attention patterns of a text, computed from the model's own queries and keys.

Fused and memory-efficient attention kernels (PyTorch's ``scaled_dot_product_attention``, flash
attention) never form the attention weights, so ``output_attentions`` is not available with them.
:func:`attention_patterns` runs the model once and records, for each attention module, the inputs of
its attention kernel: the queries and keys after every per-model step (projections, head split, rotary
embeddings), the mask the model built (causal, padding, sliding window) and the scale; then computes
``softmax(Q Kᵀ × scale + mask)`` itself, in float32, with grouped keys repeated for their query heads.

Where the kernel's inputs are recorded, with no per-architecture table:

- Hugging Face models (GPT-2, GPT-NeoX, Llama-style, BERT, ...) call their attention kernel through
  ``transformers``' attention interface; each kernel there (``sdpa``, flash, flex, ...) is wrapped for
  the duration of the call. A model set to ``eager`` attention forms the weights itself: they are
  taken from it (``output_attentions=True``).
- Any other model that calls ``torch.nn.functional.scaled_dot_product_attention`` (a hand-written GPT,
  for example): that function is wrapped, and its calls are attributed to the model's blocks in order.

Only calls from the calling thread on this model are recorded; everything is restored afterwards, even
when the forward pass raises. (A flex-attention ``BlockMask`` is not read: such a model's patterns are
causal or unmasked, without its padding or custom masks.)
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .inputs import first_tensor
from .layers import blocks_of
from .probe import Probe


@dataclass
class AttentionPatterns:
    """``patterns``: (layers, batch, heads, T, T) float32 on the CPU, row ``t`` of a head being how much
    query token ``t`` attends to each key token (rows sum to 1; a query with no key to attend, e.g. a
    padding token under left padding, is all zeros); ``layers``: the names of the blocks that hold the
    attention layers (of the attention modules where a block holds several), in the order they ran;
    ``source``: how they were obtained (``"kernel inputs"``, ``"eager weights"``,
    ``"scaled_dot_product_attention"``)."""

    layers: list[str]
    patterns: torch.Tensor
    source: str

    @property
    def heads(self) -> int:
        return int(self.patterns.shape[2])

    def layer(self, layer: int | str) -> torch.Tensor:
        """(batch, heads, T, T) of one attention layer, by index or by name."""
        if isinstance(layer, str):
            if layer not in self.layers:
                raise KeyError(f"no attention layer {layer!r}; these are: {self.layers}")
            layer = self.layers.index(layer)
        return self.patterns[layer]


def pattern_from(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """``softmax(Q Kᵀ × scale + mask)`` in float32: ``query`` (B, H, T, D), ``key`` (B, Hk, S, D) with
    ``H`` a multiple of ``Hk`` (grouped-query attention); ``mask`` broadcast to (B, H, T, S), boolean
    (True: may attend) or additive; ``causal`` masks keys after each query (with no ``mask``), aligned
    to the last keys as ``scaled_dot_product_attention`` does. Returns (B, H, T, S)."""
    q, k = query.float(), key.float()
    if q.shape[1] != k.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale is None else float(scale))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, -math.inf)
        else:
            scores = scores + mask.float()
    elif causal and scores.shape[-2] > 1:
        t, s = scores.shape[-2:]
        allowed = torch.ones(t, s, dtype=torch.bool, device=scores.device).tril(s - t)
        scores = scores.masked_fill(~allowed, -math.inf)
    return torch.softmax(scores, dim=-1).nan_to_num_(0.0)  # a query with no key: zeros, not NaN


class _Recorder:
    def __init__(self, modules: Mapping[nn.Module, str]):
        self.names = modules
        self.thread = threading.get_ident()
        self.found: dict[str, torch.Tensor] = {}
        self.inside_kernel = False
        self.from_kernels = False  # recorded at transformers' attention interface

    def mine(self) -> bool:
        return threading.get_ident() == self.thread


@contextlib.contextmanager
def _hf_kernels(recorder: _Recorder) -> Iterator[None]:
    """Wrap every attention kernel of ``transformers``' attention interface (if installed)."""
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError:
        yield
        return
    replaced: dict[str, Any] = {}

    def wrap(kernel):
        def recorded(module, query, key, value, attention_mask, *args, **kwargs):
            name = recorder.names.get(module)
            if name is not None and recorder.mine():
                scale = kwargs.get("scaling")
                causal = kwargs.get("is_causal")
                causal = getattr(module, "is_causal", True) if causal is None else causal
                mask = attention_mask if isinstance(attention_mask, torch.Tensor) else None  # not flex's BlockMask
                if mask is not None and mask.ndim == 4:
                    mask = mask[:, :, :, : key.shape[-2]]
                with torch.no_grad():
                    recorder.found[name] = pattern_from(query, key, mask, scale, bool(causal)).cpu()
                recorder.from_kernels = True
            recorder.inside_kernel = True
            try:
                return kernel(module, query, key, value, attention_mask, *args, **kwargs)
            finally:
                recorder.inside_kernel = False

        return recorded

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    try:
        for name in list(ALL_ATTENTION_FUNCTIONS):
            replaced[name] = local.get(name)
            local[name] = wrap(ALL_ATTENTION_FUNCTIONS[name])
        yield
    finally:
        for name, before in replaced.items():
            if before is None:
                local.pop(name, None)
            else:
                local[name] = before


@contextlib.contextmanager
def _torch_sdpa(recorder: _Recorder, blocks: list[tuple[str, nn.Module]]) -> Iterator[None]:
    """Wrap ``F.scaled_dot_product_attention``; calls made outside a Hugging Face kernel while a block
    runs are that block's (a second call in one block is named ``block#1``)."""
    original = F.scaled_dot_product_attention
    current: list[str] = []
    calls: dict[str, int] = {}

    def recorded(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        if current and recorder.mine() and not recorder.inside_kernel:
            block = current[-1]
            n = calls.get(block, 0)
            calls[block] = n + 1
            with torch.no_grad():
                mask = attn_mask
                if mask is not None:
                    mask = mask.expand(*query.shape[:-2], query.shape[-2], key.shape[-2]) if mask.ndim < 4 else mask
                recorder.found[block if n == 0 else f"{block}#{n}"] = pattern_from(
                    query, key, mask, scale, bool(is_causal)
                ).cpu()
        return original(
            query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kwargs
        )

    def enter(name: str):
        return lambda module, args: current.append(name)

    def leave(module, args, output) -> None:  # returns None: the output stays the block's
        current.pop()

    handles = []
    for name, block in blocks:
        handles.append(block.register_forward_pre_hook(enter(name)))
        handles.append(block.register_forward_hook(leave))
    F.scaled_dot_product_attention = recorded
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        for handle in handles:
            handle.remove()


def attention_patterns(model: nn.Module | Probe, inputs: Any, layers: Any = None) -> AttentionPatterns:
    """The attention patterns of every attention layer (or of ``layers``: indices or names, as in
    :attr:`AttentionPatterns.layers`) of the model on ``inputs`` (a tokenized batch, e.g. a
    ``TextAdapter``'s or a tokenizer's output), from one forward pass; see the module docstring.

    The patterns are the model's own, whatever attention kernel it uses: equal to what ``eager``
    attention returns with ``output_attentions=True``, for GPT-2, GPT-NeoX, Llama-style (rotary,
    grouped-query) and BERT models.
    """
    model = model.model if isinstance(model, Probe) else model
    config = getattr(model, "config", None)
    with torch.no_grad():
        if getattr(config, "_attn_implementation", None) == "eager":
            output = _call(model, inputs, output_attentions=True)
            weights = getattr(output, "attentions", None)
            if weights and weights[0] is not None:
                names = _attention_names(model, len(weights))
                return _select(
                    AttentionPatterns(names, torch.stack([w.float().cpu() for w in weights]), "eager weights"), layers
                )
        with record_attention(model) as recording:
            _call(model, inputs)
    return _select(recording.result(), layers)


class AttentionRecording(_Recorder):
    """What :func:`record_attention` recorded; :meth:`result` once the forward pass is done."""

    def __init__(self, model: nn.Module):
        super().__init__({m: name for name, m in model.named_modules() if name})
        self.model = model
        self.blocks = _blocks(model)

    def result(self) -> AttentionPatterns:
        """The patterns of every attention layer the forward pass ran (record one pass)."""
        model = self.model
        if not self.found:
            raise ValueError(
                f"found no attention in {type(model).__name__}: neither a transformers attention kernel nor "
                "torch.nn.functional.scaled_dot_product_attention was called (nn.MultiheadAttention and "
                "hand-written softmax attention are not read)"
            )
        source = "kernel inputs" if self.from_kernels else "scaled_dot_product_attention"
        names = list(self.found)
        owners = [next((b for b, _ in self.blocks if n == b or n.startswith(b + ".")), n) for n in names]
        found = dict(self.found)
        if len(set(owners)) == len(owners):  # one attention a block: name it by its block
            found = dict(zip(owners, found.values(), strict=True))
            names = owners
        shapes = {tuple(p.shape) for p in found.values()}
        if len(shapes) > 1:
            raise ValueError(f"the attention layers of {type(model).__name__} have different shapes: {sorted(shapes)}")
        return AttentionPatterns(names, torch.stack([found[n] for n in names]), source)


@contextlib.contextmanager
def record_attention(model: nn.Module | Probe) -> Iterator[AttentionRecording]:
    """Record the attention patterns of ``model``'s forward passes run inside (one that also captures
    activations, for example, so that a text needs one pass for both): ``recording.result()`` after.
    Records at the attention kernels (see the module docstring), so not for ``eager`` attention, whose
    weights ``output_attentions=True`` gives."""
    model = model.model if isinstance(model, Probe) else model
    recording = AttentionRecording(model)
    with _hf_kernels(recording), _torch_sdpa(recording, recording.blocks):
        yield recording


def _select(found: AttentionPatterns, layers: Any) -> AttentionPatterns:
    if layers is None:
        return found
    wanted = [layers] if isinstance(layers, (int, str)) else list(layers)
    index = []
    for layer in wanted:
        if isinstance(layer, str):
            if layer not in found.layers:
                raise KeyError(f"no attention layer {layer!r}; these are: {found.layers}")
            index.append(found.layers.index(layer))
        else:
            if not -len(found.layers) <= int(layer) < len(found.layers):
                raise IndexError(f"attention layer {layer} is out of range: the model has {len(found.layers)}")
            index.append(int(layer) % len(found.layers))
    return AttentionPatterns([found.layers[i] for i in index], found.patterns[index], found.source)


def _call(model: nn.Module, inputs: Any, **kwargs: Any) -> Any:
    device = next((p.device for p in model.parameters()), None)
    if isinstance(inputs, Mapping):
        moved = {
            k: v.to(device) if isinstance(v, torch.Tensor) and device is not None else v for k, v in inputs.items()
        }
        if "use_cache" in _forward_parameters(model):
            kwargs.setdefault("use_cache", False)
        return model(**moved, **kwargs)
    tensor = first_tensor(inputs)
    if tensor is None:
        raise TypeError(
            f"attention_patterns takes a tokenized batch (a mapping of tensors), got {type(inputs).__name__}"
        )
    return model(inputs.to(device) if device is not None else inputs, **kwargs)


def _forward_parameters(model: nn.Module) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    modules = dict(model.named_modules())
    return [(name, modules[name]) for name in blocks_of(model) if name in modules]


def _attention_names(model: nn.Module, count: int) -> list[str]:
    """Names for the ``count`` attention layers an eager model returned: its blocks' names (one
    attention a block), else ``attention.{i}``."""
    names = [name for name, _ in _blocks(model)]
    return names if len(names) == count else [f"attention.{i}" for i in range(count)]
