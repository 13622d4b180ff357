"""What every neurowidgets widget shares: a probe from a model, errors shown in the widget."""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import anywidget
import traitlets
from torch import nn

from ..core import Probe

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
log = logging.getLogger("neurowidgets")


def as_probe(model_or_probe: nn.Module | Probe) -> Probe:
    if isinstance(model_or_probe, Probe):
        return model_or_probe
    if isinstance(model_or_probe, nn.Module):
        return Probe(model_or_probe)
    raise TypeError(
        f"expected a torch.nn.Module or a neurowidgets.Probe, got {type(model_or_probe).__name__}"
    )


def bundle(name: str) -> pathlib.Path:
    path = STATIC / f"{name}.js"
    if not path.exists():
        raise FileNotFoundError(
            f"the front-end bundle {path} is missing: build it with `npm run build` "
            "(the README's setup command does), or install neurowidgets from a wheel"
        )
    return path


class NeuroWidget(anywidget.AnyWidget):
    """Base class: ``error`` is shown in the widget; kernel-side callbacks report into it."""

    _css = STATIC / "styles.css"
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any):
        unknown = sorted(set(kwargs) - set(self.trait_names()))
        if unknown:
            public = sorted(
                n for n in self.trait_names() if not n.startswith("_") and self.trait_metadata(n, "sync")
            )
            raise TypeError(f"{type(self).__name__} got unknown argument(s) {unknown}; it accepts {public}")
        super().__init__(**kwargs)

    @contextlib.contextmanager
    def reporting_errors(self, action: str) -> Iterator[None]:
        """Run a front-end-triggered computation; an exception is shown in the widget and logged."""
        try:
            yield
        except Exception as error:
            log.exception("%s failed while %s", type(self).__name__, action)
            self.error = f"{action}: {type(error).__name__}: {error}"
        else:
            self.error = ""
