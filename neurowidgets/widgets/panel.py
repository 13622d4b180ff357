"""Panel: one view of a LayerView's shared state, composed with others into one widget.

A panel is a plain object, not a widget: the widget it is composed into (``LayerView.composed``)
holds the state every panel shares (layer, input, example, position, selected units, scan, error)
and, beside it, each panel's own synced traits, declared by the panel in ``state`` under names no
other panel of that widget uses (composing two panels that declare one name fails). The page
mounts the panel registered under ``name`` (js/explorer.ts) on that one model.

What a panel declares:
- ``state``: its synced traits, by name (the page's panel reads them from the model);
- ``reads``: the traits (shared or its own) whose change makes it ``update()``;
- ``@handles(kind)`` methods: the page's requests it answers (see base.py);
- ``@validates(*names)`` methods: checks of its own traits' new values (``proposal`` as traitlets gives it).
Its ``update()`` recomputes what it derives from the view's state; the view also calls it once after
each new capture is shown (a new input, layer or edit), while its ``reads`` observers wait.
Private state (caches, pending work) lives on the panel object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import traitlets

if TYPE_CHECKING:
    from .layer_view import LayerView


def validates(*names: str) -> Callable:
    """Mark a panel method as the validator of its traits ``names``: ``method(proposal) -> value``."""

    def mark(method: Callable) -> Callable:
        method._validates = names
        return method

    return mark


class Panel:
    """A view of a :class:`LayerView`'s shared state (see the module's docstring)."""

    name: ClassVar[str]  # the page's registry name (js/explorer.ts), also the `panels` entry
    action: ClassVar[str]  # what its update does, for errors: "computing the feature card"
    state: ClassVar[dict[str, traitlets.TraitType]] = {}
    reads: ClassVar[tuple[str, ...]] = ()

    def __init__(self, view: LayerView):
        self.view = view

    def update(self) -> None:
        """Recompute what this panel derives from the view's state."""

    @property
    def visible(self) -> bool:
        """Whether the page shows this panel (work only it needs can wait while it is not)."""
        return self.name in self.view.panels
