"""Probe: capture and edit the outputs (or inputs) of named modules of any torch model during a forward pass.

Layers are named by their ``model.named_modules()`` paths; ``"<path>:input"`` names what that module
receives (a gated MLP's neurons, ``act(gate) * up``, exist only as the input of its down projection).
Hooks are registered for one run and always removed afterwards, and the model's train/eval mode is
restored, even when the forward raises. A run whose output is not used stops right after the last
layer it captures.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .activations import LAYOUTS, Activations, as_bpu, infer_layout, positions_shape_of
from .edits import Edit, as_edit_list
from .inputs import call_model, describe, first_tensor, to_device

INPUT = ":input"  # suffix of a layer name that means the module's input rather than its output


class _StopForward(BaseException):
    """Ends a forward pass whose output is not used, once every wanted layer is captured. A
    BaseException, so that a model's own ``except Exception`` does not swallow it."""


class LayerError(KeyError):
    """A layer name that the model does not have, or a layer that did not run."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ModelCallError(RuntimeError):
    """The model raised while the probe ran it; the message adds what the probe knows."""


@dataclass(frozen=True)
class LayerInfo:
    """What a view needs to know about a layer; sizes are ``None`` until the layer has run once."""

    name: str
    module_type: str
    layout: str | None = None
    units: int | None = None
    positions_shape: tuple[int, ...] | None = None
    base: str | None = None  # for a derived layer (see Probe.attach): the layer it reads


@dataclass(frozen=True)
class _Attached:
    base: str
    encoder: nn.Module
    decoder: nn.Module | None

    def features(self, activations: torch.Tensor) -> torch.Tensor:
        # A sparse autoencoder's forward is its reconstruction (SAELens): its features come from encode.
        encode = getattr(self.encoder, "encode", None)
        return encode(activations) if callable(encode) else self.encoder(activations)


@dataclass(frozen=True)
class TensorSignature:
    """A tensor's shape, dtype and storage: enough to tell whether two modules saw the very same tensor."""

    shape: tuple[int, ...]
    floating: bool
    storage: tuple[int, tuple[int, ...]]  # (data pointer, strides)


@dataclass(frozen=True)
class Traced:
    """One module's first call in :meth:`Probe.trace`: signatures of its first input and output tensors."""

    name: str
    input: TensorSignature | None
    output: TensorSignature | None


def _signature(tensor: torch.Tensor | None) -> TensorSignature | None:
    if tensor is None:
        return None
    return TensorSignature(tuple(tensor.shape), tensor.is_floating_point(), (tensor.data_ptr(), tensor.stride()))


class Capture(Mapping[str, Activations]):
    """The result of :meth:`Probe.run`: layer name → :class:`Activations`, and the model's ``output``."""

    def __init__(self, activations: dict[str, Activations], output: Any):
        self._activations = activations
        self.output = output

    def __getitem__(self, layer: str) -> Activations:
        try:
            return self._activations[layer]
        except KeyError:
            raise LayerError(
                f"layer {layer!r} was not captured in this run; captured: {sorted(self._activations)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._activations)

    def __len__(self) -> int:
        return len(self._activations)

    def __repr__(self) -> str:
        return f"Capture({list(self._activations)})"


def nearest_names(name: str, names: Iterable[str], n: int = 5) -> list[str]:
    names = list(names)
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.4)
    # A short name is often the last component of a long path ("fc1" for "classifier.fc1").
    tails = [m for m in names if m.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1] and m not in close]
    return (tails + close)[:n]


def _replace_first_tensor(output: Any, new: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, tuple) and not hasattr(output, "_fields"):
        index = next(i for i, item in enumerate(output) if first_tensor(item) is not None)
        return (*output[:index], _replace_first_tensor(output[index], new), *output[index + 1 :])
    if isinstance(output, list):
        index = next(i for i, item in enumerate(output) if first_tensor(item) is not None)
        return [*output[:index], _replace_first_tensor(output[index], new), *output[index + 1 :]]
    if isinstance(output, Mapping):  # dict and transformers' ModelOutput
        key = next(k for k, v in output.items() if first_tensor(v) is not None)
        result = output.copy()
        result[key] = _replace_first_tensor(output[key], new)
        return result
    raise TypeError(f"cannot edit a module output of type {type(output).__name__}")


class Probe:
    """Capture and edit layers of ``model``.

    Parameters
    ----------
    model: any ``torch.nn.Module``; it is never moved or modified by the probe.
    layers: the layers :meth:`run` captures when it is not told which (default: none, output only).
    device: where inputs are moved before the forward pass (default: the model's parameters' device).
    layouts: per-layer override of how the output maps to (batch, positions, units):
        ``"channels"`` (units on dim 1, e.g. Conv1d outputs after an activation) or ``"last"``.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str] | None = None,
        device: torch.device | str | None = None,
        layouts: Mapping[str, str] | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Probe needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._modules: dict[str, nn.Module] = {n: m for n, m in model.named_modules() if n}
        self._attached: dict[str, _Attached] = {}
        self._seen: dict[str, LayerInfo] = {}
        self._edits: dict[str, list[Edit]] = {}
        self.device = torch.device(device) if device is not None else self._model_device()
        self._layouts = dict(layouts or {})
        for name, layout in self._layouts.items():
            self._check_name(name)
            if layout not in LAYOUTS:
                raise ValueError(f"layout for {name!r} must be one of {LAYOUTS}, got {layout!r}")
        self.default_layers = [self._check_name(n) for n in (layers or [])]
        self._options = _call_options(model)
        self._stops = True  # False once the model has swallowed the exception that stops a forward early

    def _model_device(self) -> torch.device:
        for tensor in (*self.model.parameters(), *self.model.buffers()):
            return tensor.device
        return torch.device("cpu")

    # -- layer names ---------------------------------------------------------------------------

    @property
    def layer_names(self) -> list[str]:
        return [*self._modules, *self._attached]

    @property
    def layers(self) -> dict[str, LayerInfo]:
        """Every capturable layer; sizes are filled in once a layer has run (see :meth:`describe`)."""
        result = {}
        for name in self.layer_names:
            if name in self._seen:
                result[name] = self._seen[name]
            elif name in self._attached:
                attached = self._attached[name]
                result[name] = LayerInfo(name, type(attached.encoder).__name__, base=attached.base)
            else:
                result[name] = LayerInfo(name, type(self._modules[name]).__name__)
        return result

    def info(self, layer: str) -> LayerInfo:
        """What is known of one layer (sizes once it has run)."""
        self._check_name(layer)
        if layer in self._seen:
            return self._seen[layer]
        attached = self._attached.get(layer)
        return LayerInfo(layer, type(self.module_of(layer)).__name__, base=attached.base if attached else None)

    def describe(self, example: Any) -> dict[str, LayerInfo]:
        """Run ``example`` once capturing every layer, so that :attr:`layers` knows every size."""
        self.run(example, layers=self.layer_names, strict=False, output=False)
        return self.layers

    def trace(self, example: Any) -> list[Traced]:
        """Run ``example`` once and record, for the first call of every module in the order the calls
        end, the shape and storage of what went in and came out (the cost of one forward pass)."""
        calls: dict[str, Traced] = {}
        alive: list[torch.Tensor] = []  # until the end, so that no freed storage is reused and mistaken

        def recorder(name: str):
            def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
                if name not in calls:
                    found = first_tensor(args)
                    tensors = (found if found is not None else first_tensor(kwargs), first_tensor(output))
                    alive.extend(t for t in tensors if t is not None)
                    calls[name] = Traced(name, *map(_signature, tensors))

            return hook

        handles = [m.register_forward_hook(recorder(n), with_kwargs=True) for n, m in self._modules.items()]
        modes = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            inputs = to_device(example, self.device)
            with torch.no_grad():
                try:
                    call_model(self.model, inputs, self._options)
                except Exception as error:
                    raise self._call_error(error, inputs, [], {}) from error
        finally:
            for handle in handles:
                handle.remove()
            for module, mode in modes:
                module.training = mode
        return list(calls.values())

    def _check_name(self, name: str) -> str:
        if name in self._modules or name in self._attached:
            return name
        if not isinstance(name, str):
            raise TypeError(f"layer names are strings (named_modules paths), got {type(name).__name__}")
        if name.endswith(INPUT) and name[: -len(INPUT)] in self._modules:
            return name
        names = self.layer_names
        module = name.removesuffix(INPUT)
        near = nearest_names(module, names)
        if module != name:
            near = [n + INPUT for n in near if n in self._modules]
        hint = f" Closest: {', '.join(map(repr, near))}." if near else ""
        listed = ", ".join(names[:40]) + (f", … ({len(names)} in all)" if len(names) > 40 else "")
        raise LayerError(f"the model has no layer {name!r}.{hint} Layers: {listed} (a module's input: '<name>{INPUT}')")

    def module_of(self, layer: str) -> nn.Module:
        """The module whose output (or, for ``"<path>:input"``, input) ``layer`` is."""
        self._check_name(layer)
        attached = self._attached.get(layer)
        return attached.encoder if attached else self._modules[layer.removesuffix(INPUT)]

    # -- features as units ---------------------------------------------------------------------

    def attach(self, layer: str, encoder: nn.Module, name: str | None = None, decoder: nn.Module | None = None) -> str:
        """Add a derived layer whose units are ``encoder(activations of layer)``.

        The encoder receives the layer's (batch, positions, units) activations and returns
        (batch, positions, features), e.g. a sparse autoencoder's encoder. An object with an
        ``encode`` method (a sparse autoencoder such as SAELens's, whose call is its reconstruction) is
        encoded with that method, and decoded with its ``decode``. Captured, edited and
        scanned like any layer. Editing it needs a ``decoder`` (or an encoder with a ``decode``
        method): the layer's output then becomes ``output + decode(edited) - decode(features)``,
        which keeps the autoencoder's reconstruction error in place.
        """
        self._check_name(layer)
        if layer in self._attached:
            raise ValueError("attach to a layer of the model, not to another derived layer")
        name = name or f"{layer}.{type(encoder).__name__.lower()}"
        if name in self._modules or name in self._attached:
            raise ValueError(f"a layer named {name!r} already exists")
        if decoder is None and callable(getattr(encoder, "decode", None)):
            decoder = _DecodeMethod(encoder)
        self._attached[name] = _Attached(layer, encoder, decoder)
        return name

    # -- edits ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def edit(self, edits: Mapping[str, Edit | Iterable[Edit]]) -> Iterator[Probe]:
        """Apply ``{layer: edit or [edits]}`` to every run inside the ``with`` block."""
        parsed = {self._check_name(layer): as_edit_list(e) for layer, e in edits.items()}
        for layer in parsed:
            if layer in self._attached and self._attached[layer].decoder is None:
                raise ValueError(
                    f"editing the derived layer {layer!r} needs a decoder to map the features back: "
                    "pass decoder= to probe.attach (or give the encoder a decode method)"
                )
        previous = self._edits
        merged = {layer: list(e) for layer, e in previous.items()}
        for layer, e in parsed.items():
            merged.setdefault(layer, []).extend(e)
        self._edits = merged
        try:
            yield self
        finally:
            self._edits = previous

    # -- running -------------------------------------------------------------------------------

    def run(
        self, inputs: Any, layers: Iterable[str] | None = None, strict: bool = True, *, output: bool = True
    ) -> Capture:
        """Run the model on ``inputs`` and return the requested layers' activations and the output.

        ``inputs`` is fed the natural way: a tensor as ``model(x)``, a tuple as ``model(*x)``,
        a mapping as ``model(**x)``; a model that takes ``use_cache`` gets ``use_cache=False`` (a
        capture keeps no key-value cache). Captures are detached, without gradients, on the model's
        device. With ``strict`` (the default), a requested layer that never ran raises :class:`LayerError`.

        ``output=False``: the output is not needed, so the forward pass stops as soon as every
        requested layer is captured (``Capture.output`` is then ``None``). A model whose forward
        swallows the exception that stops it runs to its end instead, and a warning says so once.
        """
        wanted = self.default_layers if layers is None else [self._check_name(n) for n in layers]
        captured: dict[str, torch.Tensor] = {}
        if not wanted and not output:
            return Capture({}, None)
        stop = None if output else _Stopper(self, wanted, captured)
        hooked = {self._base(n) for n in wanted} | {self._base(n) for n in self._edits}
        handles = []
        model = self.model
        restore_modes = model.training
        modes = [(m, m.training) for m in model.modules()] if restore_modes else ()
        result = None
        try:
            if restore_modes:
                model.eval()
            for base in hooked:
                hook = self._make_hook(base, wanted, captured, stop)
                module = self._modules[base.removesuffix(INPUT)]
                if base.endswith(INPUT):
                    handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
                else:
                    handles.append(module.register_forward_hook(hook))
            inputs = to_device(inputs, self.device)
            with torch.no_grad():
                try:
                    result = call_model(model, inputs, self._options)
                except _StopForward:
                    result = None
                except Exception as error:
                    if getattr(error, "_from_probe", False):  # our own message says it already
                        raise
                    raise self._call_error(error, inputs, wanted, captured) from error
                else:
                    if stop is not None and stop.raised:
                        self._stops = False
                        warnings.warn(
                            f"{type(model).__name__}'s forward caught the exception that ends a capture early, so "
                            "every capture of this model runs the whole forward pass",
                            stacklevel=2,
                        )
                    if not output:
                        result = None
        finally:
            for handle in handles:
                handle.remove()
            for module, mode in modes:
                module.training = mode
        missing = [n for n in wanted if n not in captured]
        if missing and strict:
            raise LayerError(
                f"layer(s) {missing} never ran during the forward pass on {describe(inputs)}: "
                "the model's forward does not call them for this input"
            )
        activations = {}
        for name in wanted:
            if name in captured:
                activations[name] = Activations(name, captured[name], self._layout(name, captured[name]))
                self._remember(activations[name])
        return Capture(activations, result)

    def _base(self, name: str) -> str:
        attached = self._attached.get(name)
        return attached.base if attached else name

    def _layout(self, name: str, tensor: torch.Tensor) -> str:
        return self.layout(name, tensor.ndim)

    def layout(self, name: str, ndim: int) -> str:
        """How a ``ndim``-dimensional tensor of layer ``name`` maps to (batch, positions, units)."""
        if name in self._attached:
            return "last"
        return self._layouts.get(name) or infer_layout(self._modules[name.removesuffix(INPUT)], ndim)

    def _remember(self, acts: Activations) -> None:
        if acts.layer in self._seen:  # the hot path: once known, a layer costs one lookup per run
            return
        name = acts.layer
        attached = self._attached.get(name)
        module = self.module_of(name)
        self._seen[name] = LayerInfo(
            name,
            type(module).__name__,
            acts.layout,
            acts.num_units,
            acts.positions_shape,
            attached.base if attached else None,
        )

    def _make_hook(self, base: str, wanted: list[str], captured: dict[str, torch.Tensor], stop: _Stopper | None):
        edits = self._edits.get(base)
        capture_base = base in wanted
        derived = [
            (name, a)
            for name, a in self._attached.items()
            if a.base == base and (name in wanted or name in self._edits)
        ]

        def process(found: Any) -> torch.Tensor | None:
            """The layer's tensor after edits and derived layers; None when nothing changed it."""
            tensor = first_tensor(found)
            if tensor is None:
                what = "received" if base.endswith(INPUT) else "returned"
                error = LayerError(f"layer {base!r} {what} no tensor (got {type(found).__name__})")
                error._from_probe = True  # type: ignore[attr-defined]
                raise error
            changed = False
            if edits:
                tensor = self._apply_edits(base, tensor, edits)
                changed = True
            for name, attached in derived:
                tensor, edited = self._run_derived(base, name, attached, tensor, captured)
                changed = changed or edited
            if capture_base and base not in captured:
                captured[base] = tensor.detach()
            if stop is not None:
                stop.check()
            return tensor if changed else None

        if base.endswith(INPUT):

            def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
                if first_tensor(args) is not None:
                    tensor = process(args)
                    return None if tensor is None else (_replace_first_tensor(args, tensor), kwargs)
                tensor = process(kwargs)
                return None if tensor is None else (args, _replace_first_tensor(kwargs, tensor))

            return pre_hook

        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            tensor = process(output)
            return None if tensor is None else _replace_first_tensor(output, tensor)

        return hook

    def _apply_edits(self, layer: str, tensor: torch.Tensor, edits: list[Edit]) -> torch.Tensor:
        tensor = tensor.clone()
        view = as_bpu(tensor, self._layout(layer, tensor))
        for edit in edits:
            try:
                edit.apply_(view, layer)
            except (IndexError, ValueError) as error:
                error._from_probe = True  # type: ignore[attr-defined]
                raise
        return tensor

    def _run_derived(self, base, name, attached, tensor, captured):
        layout = self._layout(base, tensor)
        bpu = as_bpu(tensor, layout)
        features = attached.features(bpu)
        if features.ndim != 3 or features.shape[:2] != bpu.shape[:2]:
            raise ValueError(
                f"the encoder attached as {name!r} must map (batch, positions, units) "
                f"{tuple(bpu.shape)} to (batch, positions, features); it returned {tuple(features.shape)}"
            )
        edits = self._edits.get(name)
        edited = False
        if edits:
            new = self._apply_edits(name, features, edits)
            delta = attached.decoder(new) - attached.decoder(features)
            features = new
            tensor = tensor.clone()
            as_bpu(tensor, layout).add_(delta.to(tensor.dtype))
            edited = True
        if name not in captured:
            grid = positions_shape_of(tensor.shape, layout)
            captured[name] = features.detach().reshape(features.shape[0], *grid, features.shape[-1])
        return tensor, edited

    def _call_error(self, error, inputs, wanted, captured) -> ModelCallError:
        parts = [f"the model raised {type(error).__name__} on input {describe(inputs)}: {error}"]
        expected = expected_input(self.model)
        if expected:
            parts.append(expected)
        if wanted:
            reached = [n for n in wanted if n in captured]
            parts.append(f"Layers captured before the error: {reached or 'none'} of {wanted}")
        return ModelCallError(". ".join(parts))

    def __repr__(self) -> str:
        return f"Probe({type(self.model).__name__}, {len(self.layer_names)} layers, device={self.device})"


class _Stopper:
    """Raises :class:`_StopForward` from the hook that completes a run's captures (at most once a run)."""

    def __init__(self, probe: Probe, wanted: list[str], captured: dict[str, torch.Tensor]):
        self.enabled = probe._stops
        self.wanted, self.captured = wanted, captured
        self.raised = False

    def check(self) -> None:
        if self.enabled and not self.raised and all(name in self.captured for name in self.wanted):
            self.raised = True
            raise _StopForward


def _call_options(model: nn.Module) -> dict[str, Any]:
    """Keywords every run passes: ``use_cache=False`` where the model takes it (transformers' models
    otherwise build a key-value cache that a capture would keep alive)."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"use_cache": False} if "use_cache" in parameters else {}


class _DecodeMethod(nn.Module):
    def __init__(self, owner: nn.Module):
        super().__init__()
        self._decode = owner.decode

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self._decode(features)


def expected_input(model: nn.Module) -> str | None:
    """What the model's first parameterised layer takes, when its type makes that knowable."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            grid = ("L", "H, W", "D, H, W")[len(module.kernel_size) - 1]
            return (
                f"Its first layer {name!r} ({type(module).__name__}) expects input of shape "
                f"(batch, {module.in_channels}, {grid})"
            )
        if isinstance(module, nn.Linear):
            return f"Its first layer {name!r} (Linear) expects input of shape (…, {module.in_features})"
        if isinstance(module, nn.Embedding):
            return f"Its first layer {name!r} (Embedding) expects integer token ids below {module.num_embeddings}"
        if isinstance(module, nn.RNNBase):
            order = "(batch, time" if module.batch_first else "(time, batch"
            return f"Its first layer {name!r} ({type(module).__name__}) expects {order}, {module.input_size})"
    return None
