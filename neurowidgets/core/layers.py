"""Which layers of a model are worth looking at, found from its module tree and one traced forward pass.

No per-architecture table: a transformer's MLP neurons are the input of each block's contracting
projection (a weight that maps the MLP width ``f`` back to the model width ``d < f``, where another
maps ``d`` up to ``f``). They are named by the outermost module that outputs that very tensor when one
does (GPT-2 and GPT-NeoX ``mlp.act``, BERT ``intermediate``), else as the projection's input (gated
MLPs of Llama, Mistral, Qwen, Gemma: ``act(gate) * up`` exists only as ``down_proj:input``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .activations import positions_shape_of, units_of
from .probe import INPUT, Probe, Traced

MLP, ATTENTION, RESIDUAL, OTHER = "MLP neurons", "attention output", "residual stream", "other modules"


@dataclass(frozen=True)
class LayerMap:
    """The layers of a model sorted by kind, from one :meth:`Probe.trace`."""

    neurons: list[str]  # MLP neurons of every block, in order
    groups: list[tuple[str, list[str]]]  # (kind, layers) for a layer picker, blocks in order within each
    spatial: dict[int, list[str]]  # rank of the position grid → layers with more than one unit, in call order


def map_layers(probe: Probe, example: Any) -> LayerMap:
    traced = probe.trace(example)
    modules = dict(probe.model.named_modules())
    neurons = _neurons(traced, modules)
    blocks = blocks_of(probe.model)
    residual = [name for name in blocks if any(t.name == name for t in traced)]
    attention = [
        f"{block}.{child}"
        for block in residual
        for child, module in modules[block].named_children()
        if "attention" in type(module).__name__.lower() or "attn" in type(module).__name__.lower()
    ]
    grouped = set(neurons) | set(residual) | set(attention)
    rest = [name for name in probe.layer_names if name not in grouped]
    groups = [(kind, names) for kind, names in ((MLP, neurons), (ATTENTION, attention), (RESIDUAL, residual)) if names]
    spatial: dict[int, list[str]] = {}
    for t in traced:
        if t.output is not None and t.output.floating:
            layout = probe.layout(t.name, len(t.output.shape))
            if units_of(t.output.shape, layout) > 1:
                spatial.setdefault(len(positions_shape_of(t.output.shape, layout)), []).append(t.name)
    return LayerMap(neurons, [*groups, (OTHER, rest)] if groups else [], spatial)


def default_layer(probe: Probe, example: Any, modality: str) -> tuple[str, LayerMap]:
    """The layer to show first, and the map it was chosen from: for text the MLP neurons of a middle
    block (never the unembedding), for images the last layer with a spatial grid."""
    layers = map_layers(probe, example)
    if modality == "text" and layers.neurons:
        return layers.neurons[len(layers.neurons) // 2], layers
    rank = 1 if modality == "text" else 2
    candidates = layers.spatial.get(rank, [])
    if modality == "text":
        candidates = candidates[:-1]  # the last is the output head (logits), not the model's inside
    if candidates:
        return (candidates[len(candidates) // 2] if modality == "text" else candidates[-1]), layers
    sized = [name for names in layers.spatial.values() for name in names]
    if not sized:
        raise ValueError("no layer of this model produced units on this input; pass layer=")
    return sized[len(sized) // 2], layers


def _neurons(traced: list[Traced], modules: dict[str, nn.Module]) -> list[str]:
    def widths(t: Traced) -> tuple[int, int] | None:
        weight = getattr(modules[t.name], "weight", None)
        if t.input is None or t.output is None or not t.input.floating or getattr(weight, "ndim", 0) != 2:
            return None
        return t.input.shape[-1], t.output.shape[-1]

    projections = [(t, w) for t in traced if (w := widths(t)) is not None]
    expanding = {w for _, w in projections if w[1] > w[0]}
    names = []
    for t, (wide, narrow) in projections:
        if wide > narrow and (narrow, wide) in expanding:
            same = [s.name for s in traced if s.output == t.input]
            names.append(min(same, key=lambda n: n.count(".")) if same else t.name + INPUT)
    return names


def blocks_of(model: nn.Module) -> list[str]:
    """The repeated blocks: the children of the model's longest ModuleList of modules of one type."""
    best: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best):
            if len({type(child) for child in module}) == 1:
                best = [f"{name}.{i}" for i in range(len(module))]
    return best
