"""Language-model readings along the residual stream: the logit effects of units, the logit lens and
the parts of the model they read (its unembedding, final norm and blocks), for any Hugging Face (or
similar) causal or masked language model. Direct logit attribution reads one forward pass of a text:
:mod:`neurowidgets.core.reading`.

Everything is found from the module tree, with no per-architecture table: the unembedding is the
model's output embedding (``get_output_embeddings()``, else the last Linear as wide as the input
vocabulary); the final norm is the last normalisation module defined after the repeated blocks; the
blocks are the model's longest ModuleList (see :mod:`neurowidgets.core.layers`); in each block, the
attention is the child whose class says so and the MLP the other child with parameters that is not a
norm. A unit's output vector is the row of the projection that reads it (the nearest module whose
weight takes the layer's width, e.g. ``c_proj``, ``down_proj`` or BERT's ``output.dense``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .layers import blocks_of
from .probe import INPUT, Probe

LogitList = list[tuple[int, str, float]]


# -- the model's parts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Readout:
    """The map from the residual stream to the logits: ``unembed(norm(x))``."""

    unembed: nn.Module
    weight: torch.Tensor  # (vocab, d)
    norm: nn.Module | None
    norm_name: str | None

    @property
    def width(self) -> int:
        return int(self.weight.shape[1])

    @property
    def rms(self) -> bool:
        """An RMS norm (no centring) rather than a layer norm."""
        return self.norm is not None and "rms" in type(self.norm).__name__.lower()

    def logits(self, residual: torch.Tensor) -> torch.Tensor:
        """What the model's head makes of a residual-stream tensor (..., d)."""
        x = residual.to(self.weight.dtype)
        return self.unembed(self.norm(x) if self.norm is not None else x)

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """A layer norm subtracts each vector's mean (linear, so it applies to each part of a sum)."""
        return x if self.norm is None or self.rms else x - x.mean(dim=-1, keepdim=True)

    def gained(self, x: torch.Tensor) -> torch.Tensor:
        """Times the final norm's weight, where it has one."""
        gain = getattr(self.norm, "weight", None)
        return x * gain.to(x.dtype) if isinstance(gain, torch.Tensor) and gain.shape == x.shape[-1:] else x

    def through_norm(self, directions: torch.Tensor) -> torch.Tensor:
        """Directions (..., d) as the final norm passes them on: centred (a layer norm) and scaled by its
        weight; its division by the residual's scale is left out (it depends on the input)."""
        return self.gained(self.centre(directions))


def readout_of(model: nn.Module) -> Readout:
    """The model's unembedding and final norm; a clear error for a model without an unembedding."""
    unembed = None
    get = getattr(model, "get_output_embeddings", None)
    if callable(get):
        unembed = get()
    if unembed is None:
        embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
        if embedding is not None:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            unembed = next((m for m in reversed(linears) if m.out_features == embedding.num_embeddings), None)
    weight = getattr(unembed, "weight", None)
    if unembed is None or not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(
            f"{type(model).__name__} has no unembedding (a language-model head mapping the residual stream "
            "to the vocabulary): logit views need one, e.g. AutoModelForCausalLM or AutoModelForMaskedLM "
            "rather than AutoModel"
        )
    return Readout(unembed, weight.detach(), *_final_norm(model, int(weight.shape[1])))


def _final_norm(model: nn.Module, width: int) -> tuple[nn.Module | None, str | None]:
    blocks = blocks_of(model)
    if not blocks:
        return None, None
    container = blocks[0].rsplit(".", 1)[0]
    after = False
    found: tuple[nn.Module | None, str | None] = (None, None)
    for name, module in model.named_modules():
        if name == container:
            after = True
        elif after and not name.startswith(container + ".") and _is_norm(module):
            if getattr(module, "weight", None) is None or module.weight.shape == (width,):
                found = (module, name)
    return found


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower() and not list(module.children())


@dataclass(frozen=True)
class BlockParts:
    name: str
    attention: str | None
    mlp: str | None
    out_projection: str | None  # the attention's output projection (its input holds the heads)


def block_parts(model: nn.Module) -> list[BlockParts]:
    parts = []
    for block in blocks_of(model):
        module = model.get_submodule(block)
        attention = mlp = None
        for child_name, child in module.named_children():
            kind = type(child).__name__.lower()
            if "attention" in kind or "attn" in kind:
                attention = attention or child_name
            elif not _is_norm(child) and any(True for _ in child.parameters()):
                mlp = mlp or child_name
        projection = None
        if attention is not None:
            children = [(n, c) for n, c in model.get_submodule(f"{block}.{attention}").named_children()]
            weighted = [n for n, c in children if getattr(getattr(c, "weight", None), "ndim", 0) == 2]
            projection = f"{block}.{attention}.{weighted[-1]}" if weighted else None
        parts.append(BlockParts(block, attention and f"{block}.{attention}", mlp and f"{block}.{mlp}", projection))
    return parts


# -- logit effects of units ------------------------------------------------------------------------


def output_vectors(probe: Probe, layer: str, width: int | None = None) -> torch.Tensor:
    """(units, d): what each unit of ``layer`` writes to the residual stream along the direct path.
    ``width``: the layer's number of units where the probe has not run on an input yet (e.g. a scan's).

    A layer as wide as the residual stream (a block's output, an attention or MLP output): its basis
    vectors. An attached sparse autoencoder: its decoder rows. Neurons: the rows of the projection that
    reads them (the nearest module whose weight takes their width)."""
    readout = readout_of(probe.model)
    d = readout.width
    attached = probe._attached.get(layer)
    if attached is not None:
        return _decoder_rows(layer, attached, d)
    units = probe.info(layer).units or width
    if units is None:
        raise ValueError(f"the width of layer {layer!r} is not known yet: run the probe on an input first")
    if units == d:
        return torch.eye(d, dtype=readout.weight.dtype, device=readout.weight.device)
    name, module = _reading_projection(probe, layer, units)
    weight = module.weight.detach()
    rows = weight if _is_conv1d(module) else weight.T  # transformers' Conv1D keeps (in, out)
    if rows.shape != (units, d):
        raise ValueError(
            f"{name!r}, which reads layer {layer!r}, maps {units} units to {rows.shape[1]} values, not to the "
            f"residual stream's {d}: logit effects need a projection into the residual stream"
        )
    return rows


def _decoder_rows(layer: str, attached: Any, d: int) -> torch.Tensor:
    rows = getattr(attached.encoder, "W_dec", None)  # SAELens: (d_sae, d_in)
    if not isinstance(rows, torch.Tensor) and isinstance(attached.decoder, nn.Linear):
        rows = attached.decoder.weight.T
    if not isinstance(rows, torch.Tensor) or rows.ndim != 2 or rows.shape[1] != d:
        raise ValueError(
            f"the features of {layer!r} need decoder rows into the residual stream ({d} values each): an "
            "encoder with W_dec (features, d) or an nn.Linear decoder"
        )
    return rows.detach()


def _is_conv1d(module: nn.Module) -> bool:
    return hasattr(module, "nf") and not isinstance(module, nn.Linear)


def _in_width(module: nn.Module) -> int | None:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or isinstance(module, nn.Embedding):
        return None
    return int(weight.shape[0] if _is_conv1d(module) else weight.shape[1])


def _reading_projection(probe: Probe, layer: str, units: int) -> tuple[str, nn.Module]:
    if layer.endswith(INPUT):
        name = layer.removesuffix(INPUT)
        return name, probe.module_of(layer)
    path = layer.split(".")
    best, best_shared = None, -1
    for name, module in probe.model.named_modules():
        if name == layer or name.startswith(layer + ".") or _in_width(module) != units:
            continue
        shared = 0
        for a, b in zip(path, name.split("."), strict=False):
            if a != b:
                break
            shared += 1
        if shared > best_shared:
            best, best_shared = (name, module), shared
    if best is None:
        raise ValueError(
            f"no projection of the model reads the {units} units of {layer!r}: logit effects need the weight "
            "that maps them to the residual stream"
        )
    return best


def top_logits(
    model_or_probe: nn.Module | Probe,
    layer: str,
    units: int | Iterable[int],
    k: int = 10,
    tokenizer: Any = None,
    width: int | None = None,
) -> dict[int, tuple[LogitList, LogitList]]:
    """``{unit: (raised, lowered)}``: the ``k`` tokens whose logits the unit's output raises most and
    lowers most along the direct path (its output vector, through the final norm's weight, times the
    unembedding), each as (token id, token text, value); raised in descending order, lowered ascending.
    Token texts come from ``tokenizer`` (``convert_ids_to_tokens``), else they are the ids as text.
    ``width``: the layer's number of units, where the probe has not run yet (e.g. ``stats.num_units``)."""
    probe = model_or_probe if isinstance(model_or_probe, Probe) else Probe(model_or_probe)
    probe._check_name(layer)
    units = [int(units)] if isinstance(units, (int, np.integer)) else [int(u) for u in units]
    vectors = output_vectors(probe, layer, width)
    bad = [u for u in units if not 0 <= u < vectors.shape[0]]
    if bad:
        raise IndexError(f"unit {bad[0]} does not exist: layer {layer!r} has units 0…{vectors.shape[0] - 1}")
    readout = readout_of(probe.model)
    with torch.no_grad():
        effects = readout.through_norm(vectors[units].to(readout.weight.dtype)) @ readout.weight.T
    k = min(int(k), effects.shape[1])
    result = {}
    for unit, row in zip(units, effects.float().cpu(), strict=True):
        raised = torch.topk(row, k)
        lowered = torch.topk(row, k, largest=False)
        result[unit] = (_named(raised, tokenizer), _named(lowered, tokenizer))
    return result


def _named(top: Any, tokenizer: Any) -> LogitList:
    ids = [int(i) for i in top.indices]
    texts = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(i) for i in ids]
    return [(i, str(t), float(v)) for i, t, v in zip(ids, texts, top.values, strict=True)]


# -- the logit lens and direct logit attribution ---------------------------------------------------


@dataclass(frozen=True)
class LogitLens:
    """Each block's residual stream read by the model's head: ``ids`` and ``probs`` are (blocks,
    positions, k), the top ``k`` tokens and their probabilities; ``blocks`` names the rows."""

    blocks: list[str]
    ids: np.ndarray
    probs: np.ndarray


def logit_lens(probe: Probe, inputs: Any, k: int = 5, example: int = 0) -> LogitLens:
    """The logit lens of one example of ``inputs``: one forward pass, then the head on each block."""
    readout = readout_of(probe.model)
    blocks = [part.name for part in block_parts(probe.model)]
    if not blocks:
        raise ValueError(f"{type(probe.model).__name__} has no repeated blocks (a ModuleList): no logit lens")
    capture = probe.run(inputs, blocks, output=False)
    ids, probs = [], []
    with torch.no_grad():
        for block in blocks:
            probabilities = torch.softmax(readout.logits(capture[block].values[example]).float(), dim=-1)
            top = torch.topk(probabilities, min(k, probabilities.shape[-1]), dim=-1)
            ids.append(top.indices.cpu().numpy())
            probs.append(top.values.cpu().numpy())
    return LogitLens(blocks, np.stack(ids), np.stack(probs))


@dataclass(frozen=True)
class LogitAttribution:
    """Direct logit attribution of ``target`` at ``position``: ``parts`` maps each component
    (``"embeddings"``, each block's attention and MLP outputs, and with ``heads`` each head as
    ``"<attention>.head<h>"``) to its share of the logit; ``constant`` is what no component writes (the
    norm's bias and the unembedding's); ``logit`` is the model's logit. The shares are exact given the
    final norm's scale of this input's residual (``scale``), which they divide by."""

    target: int
    position: int
    logit: float
    parts: dict[str, float]
    heads: dict[str, list[float]]
    constant: float
    scale: float

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()) + self.constant)


def _norm_scale(readout: Readout, residual: torch.Tensor) -> float:
    """What the final norm divides this residual by (1 without a norm)."""
    if readout.norm is None:
        return 1.0
    eps = float(getattr(readout.norm, "eps", getattr(readout.norm, "variance_epsilon", 1e-5)) or 1e-5)
    if readout.rms:
        return float(torch.sqrt(residual.pow(2).mean() + eps))
    return float(torch.sqrt(residual.var(unbiased=False) + eps))


def _heads(model: nn.Module, width: int) -> int | None:
    config = getattr(model, "config", None)
    for key in ("num_attention_heads", "n_head", "num_heads"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0 and width % value == 0:
            return value
    return None
