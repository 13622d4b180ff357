"""What every neurowidgets widget shares: a probe from a model, errors shown in the widget."""

from __future__ import annotations

import contextlib
import logging
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anywidget
import traitlets
from torch import nn

from ..core import Probe
from . import background

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
log = logging.getLogger("neurowidgets")


def as_probe(model_or_probe: nn.Module | Probe) -> Probe:
    if isinstance(model_or_probe, Probe):
        return model_or_probe
    if isinstance(model_or_probe, nn.Module):
        return Probe(model_or_probe)
    raise TypeError(f"expected a torch.nn.Module or a neurowidgets.Probe, got {type(model_or_probe).__name__}")


def bundle(name: str) -> pathlib.Path:
    path = STATIC / f"{name}.js"
    if not path.exists():
        raise FileNotFoundError(
            f"the front-end bundle {path} is missing: build it with `npm run build` "
            "(the README's setup command does), or install neurowidgets from a wheel"
        )
    return path


SLOW_REQUEST_S = 0.5


def handles(kind: str) -> Callable:
    """Mark a method as the handler of front-end requests of ``kind`` (see js/lib/requests.ts)."""

    def mark(method: Callable) -> Callable:
        method._handles = kind
        return method

    return mark


def handlers_of(cls: type) -> dict[str, str]:
    """The request kinds ``cls`` handles (see :func:`handles`), each with its method's name."""
    return {
        member._handles: name
        for klass in reversed(cls.__mro__)
        for name, member in vars(klass).items()
        if hasattr(member, "_handles")
    }


class NeuroWidget(anywidget.AnyWidget):
    """Base class of every view.

    - ``error`` is shown in the widget; kernel-side work triggered by the front-end reports into it.
    - Requests: the front-end sends ``{type: "request", id, kind, args}``; the method marked with
      ``@handles(kind)`` runs with ``**args`` and updates traits; then the widget answers
      ``{type: "response", id, ok, error?, data?}`` so the front-end knows the state has arrived. A
      handler that returns the ``background.Job`` it submitted answers in parts: the job's progress as
      ``{type: "progress", id, data}``, then one response when it ends (``cancelled: true`` if it was).
    """

    _css = STATIC / "styles.css"
    error = traitlets.Unicode("").tag(sync=True)
    # Names the page's store of this model (js/lib/store.ts): anywidget gives initialize and render
    # different proxies of one model, so the store is found by this id.
    _id = traitlets.Unicode().tag(sync=True)
    _errors_reported = 0  # counts the errors reporting_errors has shown

    def __init__(self, **kwargs: Any):
        unknown = sorted(set(kwargs) - set(self.trait_names()))
        if unknown:
            public = sorted(n for n in self.trait_names() if not n.startswith("_") and self.trait_metadata(n, "sync"))
            raise TypeError(f"{type(self).__name__} got unknown argument(s) {unknown}; it accepts {public}")
        super().__init__(**kwargs)
        self._handlers = {kind: getattr(self, name) for kind, name in handlers_of(type(self)).items()}
        self.on_msg(self._on_request)

    @traitlets.default("_id")
    def _new_id(self) -> str:
        return uuid.uuid4().hex

    # The background's worker publishes into widgets from its own thread (background.py) while the
    # kernel's thread handles messages. ipywidgets keeps one unlocked flag and one set per widget for
    # the state held back by hold_sync, and reads a value when it sends it: across two threads a key
    # could be queued behind the other thread's hold, sent with a stale value after a newer one, or
    # break the other's iteration (seen: a linked LogitLens whose page kept the old text's tokens).
    # Every change and every held block goes through the background's lock, so each thread's updates
    # reach the page whole and in the order their values were set.
    @contextlib.contextmanager
    def hold_sync(self) -> Iterator[None]:
        with background.lock, super().hold_sync():
            yield

    def notify_change(self, change: Any) -> None:
        with background.lock:
            super().notify_change(change)

    def set_state(self, sync_data: dict) -> None:
        """A value from the front-end that fails validation is reported in the widget, and the
        front-end is put back on the kernel's values (ipywidgets alone would only log it)."""
        try:
            super().set_state(sync_data)
        except traitlets.TraitError as error:
            log.warning("%s rejected %s: %s", type(self).__name__, sorted(sync_data), error)
            self.error = f"rejected {', '.join(sorted(sync_data))}: {error}"
            self.send_state(list(sync_data))

    def _handle_msg(self, msg: dict) -> None:
        # Every message from the front-end (a click, a request) goes before the background's work,
        # which pauses at its next module until the answer is computed (see background.py).
        with background.foreground():
            super()._handle_msg(msg)

    def _on_request(self, widget: Any, content: Any, buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "request":
            return
        request_id, kind = content.get("id"), content.get("kind")
        handler = self._handlers.get(kind)
        start = time.perf_counter()
        reply: dict[str, Any] = {"type": "response", "id": request_id, "ok": True}
        job = None
        if handler is None:
            reply.update(ok=False, error=f"{type(self).__name__} has no request {kind!r}")
        else:
            with self.reporting_errors(kind.replace("_", " ")):
                data = handler(**(content.get("args") or {}))
                if isinstance(data, background.Job):
                    job = data
                elif data is not None:
                    reply["data"] = data
            if self.error:
                reply.update(ok=False, error=self.error)
        elapsed = time.perf_counter() - start
        if elapsed > SLOW_REQUEST_S:
            log.info("%s: request %s took %.2f s", type(self).__name__, kind, elapsed)
        if job is not None and reply["ok"]:
            job.answer(self.send, request_id)  # its parts as it runs, then its outcome (at once if it has ended)
        else:  # including a job that failed in the handler (run inline): its error is the answer
            self.send(reply)

    @contextlib.contextmanager
    def reporting_errors(self, action: str) -> Iterator[None]:
        """Run a front-end-triggered computation; an exception is shown in the widget and logged.

        Success clears the error shown, unless a nested ``reporting_errors`` reported one meanwhile."""
        reported = self._errors_reported
        try:
            yield
        except Exception as error:
            log.exception("%s failed while %s", type(self).__name__, action)
            self._errors_reported += 1
            self.error = f"{action}: {type(error).__name__}: {error}"
        else:
            if self._errors_reported == reported:
                self.error = ""
