"""Attribution: how much each element of the input drives one unit (or one output) of a model.

The target is a unit of a probe's layer (or, with ``layer=None``, an entry of the model's output: a class
logit, a next-token logit) at one position, or summed over the positions. Gradients need a forward pass
with autograd on, which :meth:`Probe.run` never does (it captures detached), so this module runs the model
itself: its hooks are registered for one pass and always removed, and the model's train/eval modes and
its parameters' ``requires_grad`` flags are restored afterwards, even when something raises.

Integer inputs (token ids) are not differentiable: attributions are then taken on the output of the
model's input embedding module and reported per token (summed over the embedding's width).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .activations import as_bpu, positions_shape_of
from .inputs import call_model, first_tensor, to_device
from .probe import INPUT, LayerError, Probe, _replace_first_tensor

METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "occlusion")
_OPTIONS = {
    "gradient": set(),
    "gradient_x_input": set(),
    "integrated_gradients": {"baseline", "steps", "batch_size"},
    "occlusion": {"size", "stride", "fill", "batch_size", "progress"},
}

Position = int | Sequence[int] | str | None


class _Reached(BaseException):
    """Ends a forward pass once the target layer has run: nothing after it is needed. A BaseException,
    so that a model's own ``except Exception`` does not swallow it."""


# Parameters frozen by any thread: (parameter, its flag before the first freeze, how many hold it). A
# background twin shares its parameters with the foreground's model, so two threads may freeze the same
# ones at once; the flag comes back only when the last of them is done.
_frozen: dict[int, tuple[nn.Parameter, bool, int]] = {}
_frozen_lock = threading.Lock()


@contextlib.contextmanager
def frozen(model: nn.Module, parameters: bool = True) -> Iterator[None]:
    """Eval mode and (``parameters``) no parameter gradients (only the input's are wanted;
    ``autograd.grad`` then never touches a parameter's ``.grad``) inside the block; every mode and flag
    as it was afterwards, even when blocks of several threads overlap on shared parameters. Work without
    gradients leaves the flags alone."""
    modes = [(m, m.training) for m in model.modules()]
    held = list(model.parameters()) if parameters else []
    try:
        model.eval()
        with _frozen_lock:
            for parameter in held:
                _, flag, count = _frozen.get(id(parameter), (parameter, parameter.requires_grad, 0))
                _frozen[id(parameter)] = (parameter, flag, count + 1)
                parameter.requires_grad_(False)
        yield
    finally:
        with _frozen_lock:
            for parameter in held:
                _, flag, count = _frozen[id(parameter)]
                if count == 1:
                    del _frozen[id(parameter)]
                    parameter.requires_grad_(flag)
                else:
                    _frozen[id(parameter)] = (parameter, flag, count - 1)
        for module, mode in modes:
            module.training = mode


def _flat_position(position: Position, grid: tuple[int, ...], where: str) -> int:
    """A flat index into the position grid from an int (flat, negative counts from the end), a tuple of
    grid coordinates, or ``"center"`` (a channel's spatial centre)."""
    count = math.prod(grid)
    if position == "center":
        position = tuple(size // 2 for size in grid)
    if isinstance(position, str):
        raise ValueError(f"position must be an int, a tuple of grid coordinates, 'center' or None; got {position!r}")
    if isinstance(position, Sequence):
        if len(position) != len(grid) or not all(-s <= int(p) < s for p, s in zip(position, grid, strict=True)):
            raise IndexError(f"position {tuple(position)} is out of range: {where} has a position grid of {grid}")
        coordinates = tuple(int(p) % s for p, s in zip(position, grid, strict=True))
        return int(np.ravel_multi_index(coordinates, grid)) if grid else 0
    index = operator.index(position)
    if not -count <= index < count:
        raise IndexError(f"position {index} is out of range: {where} has {count} positions (0–{count - 1})")
    return index % count


class Objective:
    """A unit's activation (or an output entry) as a differentiable function of the model's input.

    ``layer=None`` targets the model's output (its first tensor: logits), ``unit`` its last dimension
    (a class, a vocabulary entry). ``position=None`` sums over the positions; ``sign=-1`` minimises.
    Call it inside :func:`frozen`.
    """

    def __init__(self, probe: Probe, layer: str | None, unit: int, position: Position = None, sign: float = 1.0):
        if not isinstance(probe, Probe):
            raise TypeError(f"attribution needs a neurowidgets Probe, got {type(probe).__name__}")
        self.probe = probe
        self.layer = layer
        self.info = probe.info(layer) if layer is not None else None  # a LayerError names the closest layers
        if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)):
            raise TypeError(f"unit must be an int, got {type(unit).__name__}")
        self.unit, self.position, self.sign = int(unit), position, float(sign)

    @property
    def where(self) -> str:
        return "the model's output" if self.layer is None else f"layer {self.layer!r}"

    def values(self, tensor: torch.Tensor, layout: str) -> torch.Tensor:
        """(batch,) target values of a layer tensor of this layout."""
        grid = positions_shape_of(tensor.shape, layout)
        bpu = as_bpu(tensor, layout)
        if self.info is not None and self.info.base is not None:  # a derived layer: encode its base
            bpu = self.probe.module_of(self.layer)(bpu)
        units = bpu.shape[2]
        if not -units <= self.unit < units:
            raise IndexError(f"unit {self.unit} is out of range: {self.where} has {units} units (0–{units - 1})")
        column = bpu[:, :, self.unit]
        value = column.sum(1) if self.position is None else column[:, _flat_position(self.position, grid, self.where)]
        return value * self.sign if self.sign != 1.0 else value

    def __call__(self, inputs: Any, *, replace: tuple[nn.Module, torch.Tensor] | None = None) -> torch.Tensor:
        """(batch,) target values of one forward pass on ``inputs``, with autograd as the caller set it.
        ``replace=(module, tensor)``: that module's (first) output is replaced by ``tensor``."""
        probe, model = self.probe, self.probe.model
        found: list[torch.Tensor] = []
        handles = []
        try:
            if replace is not None:
                handles.append(_replace_output(*replace))
            # The probe's active edits (inside `with probe.edit(...)`) apply here as in every run.
            for base in {probe._base(name) for name in probe._edits}:
                hook = probe._make_hook(base, [], {}, None)
                handles.append(_register(probe.module_of(base), base.endswith(INPUT), hook))
            if self.layer is not None:
                handles.append(self._register_target(found))
            try:
                output = call_model(model, to_device(inputs, probe.device), probe._options)
            except _Reached:
                output = None
        finally:
            for handle in handles:
                handle.remove()
        if self.layer is None:
            tensor = first_tensor(output)
            if tensor is None:
                raise TypeError(f"the model's output has no tensor to attribute (got {type(output).__name__})")
            return self.values(tensor, "channels" if tensor.ndim >= 4 else "last")
        if not found:
            raise LayerError(f"layer {self.layer!r} never ran during the forward pass: the model does not call it")
        return found[0]

    def _register_target(self, found: list[torch.Tensor]):
        base = self.info.base or self.layer
        module = self.probe.module_of(base)

        def reached(value: Any) -> None:
            tensor = first_tensor(value)
            if tensor is None:
                raise LayerError(f"layer {base!r} has no tensor to attribute (got {type(value).__name__})")
            found.append(self.values(tensor, self.probe.layout(base, tensor.ndim)))
            raise _Reached

        if base.endswith(INPUT):
            return module.register_forward_pre_hook(lambda m, args, kwargs: reached((args, kwargs)), with_kwargs=True)
        return module.register_forward_hook(lambda m, args, output: reached(output))


def _register(module: nn.Module, pre: bool, hook: Callable):
    if pre:
        return module.register_forward_pre_hook(hook, with_kwargs=True)
    return module.register_forward_hook(hook)


def _replace_output(module: nn.Module, tensor: torch.Tensor):
    calls = []

    def hook(m: nn.Module, args: Any, output: Any) -> Any:
        calls.append(None)
        if len(calls) == 1:  # a module called again (a tied embedding read twice) keeps its own output
            return _replace_first_tensor(output, tensor)
        return None

    return module.register_forward_hook(hook)


def input_embedding(model: nn.Module, ids: torch.Tensor, call: Callable[[], Any]) -> tuple[str, nn.Module]:
    """The module that embeds the token ids: ``get_input_embeddings()`` where the model has it, else the
    first ``nn.Embedding`` that the forward pass (``call``) feeds the ids."""
    names = {module: name for name, module in model.named_modules()}
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        with contextlib.suppress(NotImplementedError):
            module = getter()
            if isinstance(module, nn.Module) and module in names:
                return names[module], module
    fed: list[nn.Module] = []

    def seen(module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].shape == ids.shape and torch.equal(args[0], ids):
            fed.append(module)
            raise _Reached

    handles = [m.register_forward_pre_hook(seen) for m in model.modules() if isinstance(m, nn.Embedding)]
    try:
        with torch.no_grad(), contextlib.suppress(_Reached):
            call()
    finally:
        for handle in handles:
            handle.remove()
    if not fed:
        raise TypeError(
            "integer inputs (token ids) are not differentiable, so attributions are taken on the input "
            "embeddings; but the model has no get_input_embeddings() and no nn.Embedding received the ids. "
            "Pass float inputs (e.g. embeddings) instead"
        )
    return names[fed[0]], fed[0]


def _repeat(value: Any, times: int, batch: int) -> Any:
    """``value`` with every tensor whose leading dimension is the batch repeated ``times`` (step-major)."""
    if isinstance(value, torch.Tensor):
        if times == 1 or value.ndim == 0 or value.shape[0] != batch:
            return value
        return value.repeat(times, *([1] * (value.ndim - 1)))
    if isinstance(value, Mapping):
        return {key: _repeat(item, times, batch) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_repeat(item, times, batch) for item in value)
    return value


class _Source:
    """What the attributions are taken on: the input itself when it is a float tensor, else the input
    embeddings of the token ids. ``x`` is that tensor (batch, ...), detached."""

    def __init__(self, objective: Objective, inputs: Any):
        self.objective = objective
        self.inputs = to_device(inputs, objective.probe.device)
        tensor = first_tensor(self.inputs)
        if tensor is None or tensor.ndim == 0:
            raise TypeError(f"attribution needs a batch of input tensors, got {type(inputs).__name__}")
        self.batch = int(tensor.shape[0])
        self.embedding: tuple[str, nn.Module] | None = None
        if tensor.is_floating_point():
            self.x = tensor.detach()
        else:
            model = objective.probe.model
            call = lambda: call_model(model, self.inputs, objective.probe._options)  # noqa: E731
            self.embedding = input_embedding(model, tensor, call)
            with torch.no_grad():
                self.x = first_tensor(self.embedding[1](tensor)).detach()

    def evaluate(self, z: torch.Tensor) -> torch.Tensor:
        """Target values for a stack of inputs ``z`` (k × batch, ...) built from ``x``, step-major."""
        times = z.shape[0] // self.batch
        inputs = _repeat(self.inputs, times, self.batch)
        if self.embedding is None:
            return self.objective(_replace_first_tensor(inputs, z))
        return self.objective(inputs, replace=(self.embedding[1], z))

    def describe(self) -> str:
        if self.embedding is None:
            return "the input"
        name, module = self.embedding
        return f"the output of the input embedding {name!r} ({type(module).__name__})"

    def like_x(self, value: Any, what: str) -> torch.Tensor:
        """``value`` (a number or a tensor broadcastable to ``x``) as a tensor shaped like ``x``."""
        tensor = torch.as_tensor(value, dtype=self.x.dtype, device=self.x.device)
        try:
            return torch.broadcast_to(tensor, self.x.shape)
        except RuntimeError:
            raise ValueError(
                f"{what} of shape {tuple(tensor.shape)} does not fit the attributions, which are taken on "
                f"{self.describe()}, shaped {tuple(self.x.shape)}"
            ) from None


def _gradient(source: _Source, z: torch.Tensor) -> torch.Tensor:
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        total = source.evaluate(z).sum()
        if not total.requires_grad:
            raise ValueError(
                f"{source.objective.where} does not depend on {source.describe()}: its gradient is zero everywhere"
            )
        (grad,) = torch.autograd.grad(total, z, allow_unused=True)
    if grad is None:
        return torch.zeros_like(z)
    return grad


def _integrated_gradients(source: _Source, baseline=0.0, steps: int = 32, batch_size: int | None = None):
    """Gauss-Legendre quadrature of the gradient along the straight path from the baseline to the input
    (Captum's default rule), ``batch_size`` path points (default: all) in one forward pass."""
    steps = operator.index(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    chunk = steps if batch_size is None else max(1, operator.index(batch_size))
    x, base = source.x, source.like_x(baseline, "the baseline")
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (0.5 * (nodes + 1)).tolist(), (0.5 * weights).tolist()
    total = torch.zeros_like(x)
    for start in range(0, steps, chunk):
        part = alphas[start : start + chunk]
        z = torch.cat([base + alpha * (x - base) for alpha in part])
        grads = _gradient(source, z).reshape(len(part), *x.shape)
        step = torch.tensor(weights[start : start + chunk], dtype=x.dtype, device=x.device)
        total += (grads * step.view(-1, *([1] * x.ndim))).sum(0)
    return total * (x - base), base


def _window_dims(source: _Source) -> tuple[int, ...]:
    """The dimensions a patch slides over: tokens for embeddings, the grid after the channels for
    (batch, channels, ...) inputs, the features of (batch, features) inputs."""
    ndim = source.x.ndim
    if source.embedding is not None or ndim == 2:
        return (1,)
    if ndim >= 3:
        return tuple(range(2, ndim))
    shape = tuple(source.x.shape)
    raise ValueError(f"occlusion needs inputs with a dimension to slide a patch over, got shape {shape}")


def _per_dim(value: int | Sequence[int], count: int, what: str) -> tuple[int, ...]:
    values = (value,) * count if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != count or any(int(v) < 1 for v in values):
        raise ValueError(f"occlusion {what} must be a positive int or {count} positive ints, got {value!r}")
    return tuple(int(v) for v in values)


def _occlusion(
    source: _Source,
    size: int | Sequence[int] = 2,
    stride: int | Sequence[int] = 1,
    fill: float = 0.0,
    batch_size: int = 256,
) -> Generator[tuple[int, int], None, torch.Tensor]:
    """The target's drop when a patch is set to ``fill``, averaged over the patches covering each element.
    A patch at every ``stride`` (and one flush with the far edge, so that every element is covered);
    ``batch_size`` occluded copies per forward pass, after each of which it yields (patches done, total).
    Returns (batch, *window grid)."""
    x = source.x
    dims = _window_dims(source)
    grid = tuple(x.shape[d] for d in dims)
    sizes = _per_dim(size, len(dims), "size")
    strides = _per_dim(stride, len(dims), "stride")
    if any(k > n for k, n in zip(sizes, grid, strict=True)):
        raise ValueError(f"occlusion size {sizes} is larger than the input's grid {grid}")
    starts = []
    for n, k, s in zip(grid, sizes, strides, strict=True):
        axis = list(range(0, n - k + 1, s))
        starts.append(axis if axis[-1] == n - k else [*axis, n - k])
    patches = list(itertools.product(*starts))
    fill_value = source.like_x(fill, "the fill")
    chunk = max(1, operator.index(batch_size))
    shape = [1] * x.ndim
    for d, n in zip(dims, grid, strict=True):
        shape[d] = n
    total = torch.zeros(x.shape[0], *grid, dtype=x.dtype, device=x.device)
    count = torch.zeros(grid, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        reference = source.evaluate(x)
        for done in range(0, len(patches), chunk):
            masks = torch.zeros(len(patches[done : done + chunk]), *grid, dtype=x.dtype, device=x.device)
            for i, corner in enumerate(patches[done : done + chunk]):
                masks[(i, *(slice(c, c + k) for c, k in zip(corner, sizes, strict=True)))] = 1
            keep = masks.view(len(masks), 1, *shape[1:])  # (patches, 1, ...) against x's (batch, ...)
            z = torch.where(keep.bool(), fill_value.unsqueeze(0), x.unsqueeze(0)).reshape(-1, *x.shape[1:])
            drops = reference - source.evaluate(z).reshape(len(masks), x.shape[0])
            total += torch.einsum("pb,p...->b...", drops, masks)
            count += masks.sum(0)
            yield min(done + chunk, len(patches)), len(patches)
    return total / count


def _spread(source: _Source, grid: torch.Tensor) -> torch.Tensor:
    """An occlusion map over the window grid, shaped like the attributions (like the input's tensor,
    the same value over its channels; per token for embeddings)."""
    if source.embedding is not None:
        return grid
    x, dims = source.x, _window_dims(source)
    view = [x.shape[0]] + [x.shape[d] if d in dims else 1 for d in range(1, x.ndim)]
    return grid.reshape(view).expand_as(x).clone()


def occlusion_sweep(
    probe: Probe, inputs: Any, layer: str | None, unit: int, position: Position = None, **options: Any
) -> Generator[tuple[int, int], None, torch.Tensor]:
    """``attribute(..., method="occlusion")`` one forward pass at a time: yields (patches done, total)
    after each batch of patches and returns the map. Closing the generator early (a cancel) leaves the
    model as it was; the parameters' grad flags are never touched."""
    accepted = _OPTIONS["occlusion"] - {"progress"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"occlusion takes no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted))}")
    objective = Objective(probe, layer, unit, position)
    with frozen(probe.model, parameters=False):
        source = _Source(objective, inputs)
        grid = yield from _occlusion(source, **options)
    return _spread(source, grid)


def attribute(
    probe: Probe,
    inputs: Any,
    layer: str | None,
    unit: int,
    method: str = "gradient",
    position: Position = None,
    *,
    return_delta: bool = False,
    **options: Any,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """How much each element of ``inputs`` drives ``unit`` of ``layer`` at ``position``.

    ``layer=None`` targets the model's output (``unit`` is a class or a vocabulary entry, ``position``
    a token for next-token logits). ``position``: None sums over the layer's positions; an int is a
    flat index (negative from the end), a tuple grid coordinates, ``"center"`` the grid's centre.

    Methods (``method=``) and their options:
      - ``"gradient"``: the saliency map, d target / d input.
      - ``"gradient_x_input"``: the gradient times the input.
      - ``"integrated_gradients"``: ``baseline`` (number or tensor, default 0), ``steps`` (32), ``batch_size``
        (path points per forward pass, default all). ``return_delta=True`` also returns the completeness
        error per example: the attributions' sum minus (target(input) − target(baseline)).
      - ``"occlusion"``: ``size`` (patch size, 2), ``stride`` (1), ``fill`` (0), ``batch_size`` (patches per
        forward pass, 256), ``progress(done, total)``; the target's drop when the patch is filled in.

    Returns a tensor shaped like the (first) input tensor; for token ids, one value per token (batch,
    tokens), taken on the input embeddings: the gradient's norm over the embedding width, the other
    methods' sum over it. NaN gradients come back as NaN.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; methods: {', '.join(METHODS)}")
    unknown = sorted(set(options) - _OPTIONS[method])
    if unknown:
        accepted = ", ".join(sorted(_OPTIONS[method])) or "none"
        raise TypeError(f"method {method!r} takes no option {', '.join(unknown)}; its options: {accepted}")
    if return_delta and method != "integrated_gradients":
        raise ValueError("return_delta (the completeness error) exists for method='integrated_gradients' only")
    if method == "occlusion":
        progress = options.pop("progress", None)
        sweep = occlusion_sweep(probe, inputs, layer, unit, position, **options)
        try:
            while True:
                try:
                    done = next(sweep)
                except StopIteration as finished:
                    return finished.value
                if progress is not None:
                    progress(*done)  # raising cancels: closing the sweep restores the model
        finally:
            sweep.close()
    objective = Objective(probe, layer, unit, position)
    with frozen(probe.model):
        source = _Source(objective, inputs)
        x = source.x
        if method == "integrated_gradients":
            result, base = _integrated_gradients(source, **options)
        else:
            result = _gradient(source, x)
            if method == "gradient_x_input":
                result = result * x
        if source.embedding is not None:
            # Per token: the gradient's length (its signed entries cancel when summed); the other methods'
            # sum over the width (what completeness adds up).
            result = result.norm(dim=-1) if method == "gradient" else result.sum(-1)
        if not return_delta:
            return result
        with torch.no_grad():
            ends = source.evaluate(torch.cat([x, base])).reshape(2, -1)
        delta = result.flatten(1).sum(1) - (ends[0] - ends[1])
        return result, delta
