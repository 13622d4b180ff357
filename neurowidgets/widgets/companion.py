"""Companion: a bokeh view that follows an explorer (or any view of one layer).

The explorer's panels share its state by being composed into one widget (see panel.py). A companion
is a separate widget, so it declares the same way what it shares: ``links``, the view's traits linked
both ways with its own of the same names (``layer``, ``selected_units``), and ``reads``, the view's
traits whose change makes it redraw (the current input). Selecting in the companion's plot selects in
the explorer's panels and the other way round.

Work over a sample of the data runs in the background (background.py); :meth:`Companion.wait` waits
for it, and closing a companion cancels it.
"""

from __future__ import annotations

import functools
from typing import Any

import traitlets

from . import background
from .bokeh_host import BokehHost
from .layer_view import LayerView


class Companion(BokehHost):
    """A :class:`BokehHost` with the suite's ``layer`` and ``selected_units``, linked by :meth:`follow`."""

    layer = traitlets.Unicode("").tag(sync=True)
    selected_units = traitlets.List(traitlets.Int()).tag(sync=True)

    links = ("layer", "selected_units")  # linked both ways with the followed view's
    reads = ("values", "example", "position", "current_index")  # the view's current input: redraw

    view: LayerView | None = None
    _links: tuple[traitlets.link, ...] = ()
    _released = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A companion whose set-up fails after it started following must not stay linked to the
        # explorer (its observers would keep running): each subclass's __init__ releases it on error.
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def released_on_error(self: Companion, *args: Any, **kw: Any) -> None:
            try:
                init(self, *args, **kw)
            except BaseException:
                if not self._released:  # once, by the innermost __init__ that failed
                    self._released = True
                    self.close()
                raise

        cls.__init__ = released_on_error

    def __init__(self, figure: Any = None, follow: LayerView | None = None, **kwargs: Any):
        super().__init__(figure, **kwargs)
        if follow is not None:
            self.follow(follow)

    def close(self) -> None:
        background.cancel(self)
        self.unfollow()
        super().close()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the work over the sample in the background is shown (for scripts and tests; a
        message handler must never wait). Raises TimeoutError after ``timeout`` seconds."""
        background.wait(self, timeout)

    def follow(self, view: LayerView) -> None:
        """Link ``layer`` and ``selected_units`` with ``view``'s (taking its values now) and follow
        its current input."""
        if not isinstance(view, LayerView):
            raise TypeError(f"a companion follows an explorer or a layer view, got {type(view).__name__}")
        self.unfollow()
        self.view = view
        self._links = tuple(traitlets.link((view, name), (self, name)) for name in self.links)
        view.observe(self._view_input_changed, names=self.reads)
        self._input_changed()

    def unfollow(self) -> None:
        for link in self._links:
            link.unlink()
        self._links = ()
        if self.view is not None:
            self.view.unobserve(self._view_input_changed, names=self.reads)
            self.view = None

    @traitlets.validate("selected_units")
    def _unique_units(self, proposal: dict) -> list[int]:
        # As the explorer keeps them: a link copies values one way only, so both must agree.
        return list(dict.fromkeys(proposal["value"]))

    def _view_input_changed(self, change: dict) -> None:
        with self.reporting_errors("following the current input"):
            self._input_changed()

    def _input_changed(self) -> None:
        """The followed view shows another input (or layer): subclasses that mark it redraw here."""
