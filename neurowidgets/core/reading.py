"""One forward pass of a language model on one text, read every way the language-model views need: the
logit lens table, the logit lens of one position, and the direct logit attribution of any position and
target token, with no further model call.

:func:`read_text` runs the model once and keeps what it captured (each block's output, the embeddings,
each block's attention and MLP outputs and the input of each attention's output projection, which
holds the heads); :func:`lens_table`, :func:`lens_at` and :func:`attribution` then only do linear
algebra on it. The last block's row of the lens is the model's own logits (its output, kept from the
same pass), so the lens at the last block equals what the model predicts.

One call does the whole attribution: :func:`direct_logit_attribution`; the logit lens's top-k table
in one call is :func:`neurowidgets.logit_lens`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .attention import attention_patterns, record_attention
from .lm import BlockParts, LogitAttribution, Readout, _heads, _is_conv1d, _norm_scale, block_parts, readout_of
from .probe import INPUT, Probe

# Vocabulary slices of the lens table: small enough to keep one slice of logits in cache-sized memory.
LENS_CHUNK = 4096


@dataclass
class TextReading:
    """What one forward pass of one text (``example`` of a batch) gives the language-model views.

    ``ids``: the text's token ids (its valid positions); ``blocks``: each block's output (blocks, T, d);
    ``components``: ``{name: (T, d)}`` the embeddings and each block's attention and MLP outputs, in
    order (empty when the model is not pre-norm, see ``attribution_error``); ``heads_in``: the input
    of each attention's output projection (T, heads × head width) by attention name; ``logits``: the
    model's own logits (T, vocab) or None; ``readout``: the unembedding and final norm, or None with
    ``logit_error`` saying why."""

    model: nn.Module
    parts: list[BlockParts]
    ids: torch.Tensor
    blocks: torch.Tensor
    components: dict[str, torch.Tensor]
    heads_in: dict[str, torch.Tensor]
    logits: torch.Tensor | None
    readout: Readout | None
    logit_error: str = ""
    attribution_error: str = ""
    inputs: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)
    # What views derive from the reading (the lens table, attention patterns), computed once.
    derived: dict = field(default_factory=dict, repr=False)
    _normed: torch.Tensor | None = field(default=None, repr=False)

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])

    @property
    def block_names(self) -> list[str]:
        return [p.name for p in self.parts]

    def normed(self) -> torch.Tensor:
        """Each block's output through the final norm (blocks, T, d), computed once."""
        if self.readout is None:
            raise ValueError(self.logit_error)
        if self._normed is None:
            with torch.no_grad():
                x = self.blocks.to(self.readout.weight.dtype)
                self._normed = self.readout.norm(x) if self.readout.norm is not None else x
        return self._normed


def read_text(probe: Probe, inputs: Mapping[str, torch.Tensor], example: int = 0) -> TextReading:
    """Run the model once on ``inputs`` and keep what the logit lens and the attribution read."""
    model = probe.model
    parts = block_parts(model)
    if not parts:
        raise ValueError(f"{type(model).__name__} has no repeated blocks (a ModuleList): no language-model views")
    try:
        readout: Readout | None = readout_of(model)
        logit_error = ""
    except ValueError as error:
        readout, logit_error = None, str(error)
    blocks = [p.name for p in parts]
    pre_norm = readout is not None and all(p.attention is not None and p.mlp is not None for p in parts)
    components: list[str] = []
    heads: list[str] = []
    if pre_norm:
        components = [parts[0].name + INPUT, *(n for p in parts for n in (p.attention, p.mlp))]
        heads = [p.out_projection + INPUT for p in parts if p.out_projection is not None]
    layers = list(dict.fromkeys([*blocks, *components, *heads]))
    with record_attention(model) as recording:  # the attention patterns, in the same pass
        capture = probe.run(inputs, layers, output=readout is not None)
    ids = inputs["input_ids"][example]
    mask = inputs.get("attention_mask")
    length = int(mask[example].sum()) if mask is not None else int(ids.shape[0])
    ids = ids[:length].cpu()

    def rows(layer: str) -> torch.Tensor:
        return capture[layer].values[example, :length].float()

    stacked = torch.stack([rows(b) for b in blocks])
    logits = None
    if readout is not None:
        output = capture.output
        found = getattr(output, "logits", None)
        if found is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            found = output[0]
        if isinstance(found, torch.Tensor) and found.ndim == 3 and found.shape[-1] == readout.weight.shape[0]:
            logits = found[example, :length].float()
    named: dict[str, torch.Tensor] = {}
    heads_in: dict[str, torch.Tensor] = {}
    attribution_error = logit_error or (
        "" if pre_norm else "direct logit attribution needs blocks with an attention and an MLP"
    )
    if pre_norm:
        named = {"embeddings": rows(components[0])}
        for p in parts:
            named[p.attention] = rows(p.attention)
            named[p.mlp] = rows(p.mlp)
        if any(v.shape != stacked[-1].shape for v in named.values()) or not torch.allclose(
            torch.stack(list(named.values())).sum(0), stacked[-1], rtol=1e-3, atol=1e-3 * float(stacked[-1].abs().max())
        ):
            named = {}
            attribution_error = (
                "the embeddings and the blocks' attention and MLP outputs do not add up to the residual stream "
                "(a post-norm model such as BERT): direct logit attribution needs a pre-norm residual stream"
            )
        else:
            heads_in = {p.attention: rows(p.out_projection + INPUT) for p in parts if p.out_projection is not None}
    reading = TextReading(
        model, parts, ids, stacked, named, heads_in, logits, readout, logit_error, attribution_error, inputs
    )
    try:
        recorded = recording.result()
    except ValueError:  # eager attention (or none the kernels saw): patterns() runs its own pass if asked
        recorded = None
    if recorded is not None and recorded.layers == blocks:  # float16: 75 MB at 512 tokens
        reading.derived["patterns"] = recorded.patterns[:, example, :, :length, :length].half()
    return reading


def patterns(reading: TextReading) -> torch.Tensor:
    """(blocks, heads, T, T) attention patterns of the text, float16 (see :mod:`neurowidgets.core.attention`): recorded
    during :func:`read_text`'s forward pass where the model's attention kernel could be read there, else
    from a forward pass of their own (eager attention returns its weights)."""
    found = reading.derived.get("patterns")
    if found is None:
        every = attention_patterns(reading.model, reading.inputs)
        found = every.patterns[:, 0, :, : reading.length, : reading.length].half()
        reading.derived["patterns"] = found
    return found


# -- the logit lens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LensTable:
    """The top token of each block's residual stream at each position: ``ids`` (blocks, T) int64 and
    ``probs`` (blocks, T) float32, the probability the model's head gives it there."""

    ids: np.ndarray
    probs: np.ndarray


def _logits(readout: Readout, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
    weight = readout.weight[start:stop]
    bias = getattr(readout.unembed, "bias", None)
    return F.linear(x, weight, bias[start:stop] if isinstance(bias, torch.Tensor) else None)


def lens_table(reading: TextReading, chunk: int = LENS_CHUNK) -> LensTable:
    """Top-1 token and probability for every block and position: one pass over the vocabulary in
    slices (a running maximum and a running sum of exponentials), never the whole (blocks × T, vocab)
    logits at once. The last block's row is the model's own output.

    Its cost is that of the unembedding on every block but the last: about twice a forward pass of a
    GPT-2-size model with a 30,000-token vocabulary. :func:`lens_table_steps` computes it in slices."""
    steps = lens_table_steps(reading, chunk)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def lens_table_steps(reading: TextReading, chunk: int = LENS_CHUNK) -> Generator[float, None, LensTable]:
    """:func:`lens_table` one slice of the vocabulary at a time: yields the fraction done after each,
    returns the table (for background work that reports progress and can stop between slices)."""
    readout = reading.readout
    if readout is None:
        raise ValueError(reading.logit_error)
    normed = reading.normed()
    length = normed.shape[1]
    own = reading.logits is not None
    x = (normed[:-1] if own else normed).reshape(-1, normed.shape[-1])
    vocab = readout.weight.shape[0]
    with torch.no_grad():
        best = torch.full((x.shape[0],), -torch.inf)
        best_id = torch.zeros(x.shape[0], dtype=torch.long)
        total = torch.zeros(x.shape[0])
        for start in range(0, vocab, chunk):
            logits = _logits(readout, x, start, start + chunk).float()
            value, index = logits.max(dim=-1)
            new = torch.maximum(best, value)
            total = total * torch.exp(best - new) + torch.exp(logits - new[:, None]).sum(-1)
            better = value > best
            best_id = torch.where(better, index + start, best_id)
            best = new
            yield min(1.0, (start + chunk) / vocab)
        probs = 1.0 / total  # exp(best - best) / Σ exp(logit - best)
        ids = best_id.reshape(-1, length)
        probs = probs.reshape(-1, length)
        if own:
            last = torch.softmax(reading.logits, dim=-1)
            top = last.max(dim=-1)
            ids = torch.cat([ids, top.indices[None]])
            probs = torch.cat([probs, top.values[None]])
    return LensTable(ids.numpy(), probs.numpy().astype(np.float32))


def lens_at(reading: TextReading, position: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` tokens and their probabilities of each block at ``position``: (blocks, k) each."""
    readout = reading.readout
    if readout is None:
        raise ValueError(reading.logit_error)
    _check_position(reading, position)
    with torch.no_grad():
        logits = _logits(readout, reading.normed()[:, position]).float()
        if reading.logits is not None:
            logits[-1] = reading.logits[position]
        top = torch.topk(torch.softmax(logits, dim=-1), min(k, logits.shape[-1]), dim=-1)
    return top.indices.numpy(), top.values.numpy().astype(np.float32)


def _check_position(reading: TextReading, position: int) -> None:
    if not 0 <= position < reading.length:
        raise IndexError(f"position {position} does not exist: the text has positions 0…{reading.length - 1}")


# -- direct logit attribution ----------------------------------------------------------------------


def default_target(reading: TextReading, position: int) -> int:
    """The next token of the text, or at its last position the model's own prediction."""
    _check_position(reading, position)
    if position + 1 < reading.length:
        return int(reading.ids[position + 1])
    if reading.logits is not None:
        return int(reading.logits[position].argmax())
    return int(_logits(reading.readout, reading.normed()[-1, position]).argmax())


def attribution(reading: TextReading, position: int, target: int | None = None) -> LogitAttribution:
    """Each component's direct share of ``target``'s logit at ``position`` (see
    :class:`neurowidgets.core.lm.LogitAttribution`): its output at that position, centred and scaled as
    the final norm does (divided by the norm's scale of this position's residual), times the target's
    unembedding row. The shares plus ``constant`` (the norm's bias and the unembedding's, through the
    row) add up to the logit exactly."""
    readout = reading.readout
    if readout is None or not reading.components:
        raise ValueError(reading.attribution_error or reading.logit_error)
    _check_position(reading, position)
    target = default_target(reading, position) if target is None else int(target)
    vocab = readout.weight.shape[0]
    if not 0 <= target < vocab:
        raise IndexError(f"target token {target} does not exist: the vocabulary has ids 0…{vocab - 1}")
    with torch.no_grad():
        final = reading.blocks[-1, position]
        if reading.logits is not None:
            logit = float(reading.logits[position, target])
        else:
            logit = float(_logits(readout, reading.normed()[-1, position])[target])
        scale = _norm_scale(readout, final)
        # A layer norm centres its input; for a dot product, centring the row instead is the same.
        row = readout.centre(readout.gained(readout.weight[target].float()))
        vectors = torch.stack([v[position] for v in reading.components.values()])
        values = (vectors @ row) / scale
        shares = {name: float(v) for name, v in zip(reading.components, values, strict=True)}
        per_head: dict[str, list[float]] = {}
        for part in reading.parts:
            z = reading.heads_in.get(part.attention)
            if z is None or part.out_projection is None:
                continue
            n_heads = _heads(reading.model, z.shape[-1])
            if n_heads is None:
                continue
            projection = reading.model.get_submodule(part.out_projection)
            weight = projection.weight.detach().float()
            out = weight.T if _is_conv1d(projection) else weight  # (d, heads × head width)
            read = (out.T @ row).reshape(n_heads, -1)  # what each head's values contribute per unit
            per_head[part.attention] = ((read * z[position].reshape(n_heads, -1)).sum(-1) / scale).tolist()
    constant = logit - sum(shares.values())
    return LogitAttribution(target, position, logit, shares, per_head, constant, scale)


def direct_logit_attribution(
    probe: Probe, inputs: Mapping[str, torch.Tensor], position: int, target: int | None = None, example: int = 0
) -> LogitAttribution:
    """Each block's attention and MLP contribution (and each head's) to one logit of a pre-norm model, in
    one call: :func:`attribution` of :func:`read_text` (one forward pass captures every component).

    ``target``: a token id; default the next token of the input (or the model's own prediction at the
    last position)."""
    return attribution(read_text(probe, inputs, example), position, target)
