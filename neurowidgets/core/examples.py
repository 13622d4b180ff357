"""Random access to a dataset's examples by global index: as model inputs, and as what a view draws.

Scans number examples in the order they come (from ``start_index``); the views of a scan (top
examples, bottom examples, quantile samples) fetch those examples again by that number, and draw a
unit's activations over them with :func:`unit_activations`: e.g. for the most negative examples,
``unit_activations(stats, unit, [e for _, e, _ in stats.bottom_k(unit)], inputs, probe)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .images import ImageAdapter
from .probe import Probe
from .stats import LayerStats, pad_grid, wider_grid
from .text import TextAdapter


class Examples:
    """``data``: a tensor of images or other inputs (examples along dim 0), a list of strings (with a
    ``text`` adapter), or an indexable dataset whose items are inputs or (inputs, label) pairs.

    ``start_index`` is the global index of ``data[0]`` (as given to the scan).
    """

    def __init__(
        self,
        data: Any,
        text: TextAdapter | None = None,
        images: ImageAdapter | None = None,
        start_index: int = 0,
    ):
        if isinstance(data, np.ndarray):
            data = torch.from_numpy(data)
        if isinstance(data, (str, bytes)) or not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
            raise TypeError(
                "examples must be indexable with a length (a tensor, a list of strings or a Dataset); "
                f"got {type(data).__name__}"
            )
        self.data = data
        self.start_index = int(start_index)
        self.is_text = len(data) > 0 and isinstance(data[0], str)
        if self.is_text and text is None:
            raise ValueError("text examples need a TextAdapter (or a tokenizer) to become model inputs")
        self.text = text
        self.images = images

    def __len__(self) -> int:
        return len(self.data)

    @property
    def modality(self) -> str:
        if self.is_text:
            return "text"
        first = self._item(self.start_index)
        return "image" if isinstance(first, torch.Tensor) and first.ndim == 3 else "tensor"

    def _item(self, index: int) -> Any:
        local = int(index) - self.start_index
        if not 0 <= local < len(self.data):
            stop = self.start_index + len(self.data)
            raise IndexError(f"example {index} is not in this data (indices {self.start_index}…{stop - 1})")
        item = self.data[local]
        if isinstance(item, (tuple, list)) and not self.is_text:  # (inputs, label) from a labelled dataset
            item = item[0]
        return item

    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        """The global indices of ``count`` examples, a seeded random choice without repeats, in order;
        all of them when there are no more. The views that summarise a sample of the data share it."""
        n = len(self.data)
        local = np.arange(n) if n <= count else np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
        return local + self.start_index

    @property
    def labelled(self) -> bool:
        """Whether the items are (inputs, label) pairs, as a labelled Dataset gives them."""
        first = self.data[0] if len(self.data) else None
        if self.is_text or not isinstance(first, (tuple, list)) or len(first) != 2:
            return False
        inputs, label = first  # not a pair of plain numbers (a 2-feature row): inputs are arrays
        return isinstance(inputs, (torch.Tensor, np.ndarray)) and np.ndim(label) == 0

    def labels(self, indices: Sequence[int]) -> np.ndarray:
        """The labels of these examples of a labelled dataset (see :attr:`labelled`)."""
        if not self.labelled:
            raise ValueError("these examples have no labels: the data's items are not (inputs, label) pairs")
        return np.array([int(self.data[int(i) - self.start_index][1]) for i in indices])

    def get(self, index: int) -> Any:
        """One example as the data holds it (a string, or a tensor without batch dimension)."""
        return self._item(index)

    def batch(self, indices: Sequence[int]) -> Any:
        """Model inputs for these examples, in this order."""
        items = [self._item(i) for i in indices]
        if self.is_text:
            return self.text(items)
        return torch.stack([torch.as_tensor(item) for item in items])

    def tokens(self, inputs: dict[str, torch.Tensor]) -> list[list[str]]:
        """The token strings of each row of a text batch, without padding."""
        mask = inputs.get("attention_mask")
        rows = []
        for row, ids in enumerate(inputs["input_ids"]):
            length = int(mask[row].sum()) if mask is not None else len(ids)
            rows.append(self.text.tokens(ids[:length]))
        return rows

    def pixels(self, images: torch.Tensor) -> np.ndarray:
        return (self.images or ImageAdapter()).to_pixels(images)


def unit_activations(
    stats: LayerStats, unit: int, indices: Sequence[int], inputs: Any, probe: Probe | None
) -> np.ndarray | None:
    """The unit's activation at every position of each example, as the scan saw it: (n, positions)
    float32, flat over the layer's position grid, NaN where an example has no such position (padding).

    From the rows the scan kept (no model run); for a scan that kept none (``keep_activations=False``,
    or saved before scans kept them), from one run of ``probe`` on ``inputs`` (these examples as model
    inputs, e.g. :meth:`Examples.batch`), shaped alike; ``None`` without a probe.
    """
    if stats.keep_activations:
        return stats.activations(unit, indices)
    if probe is None:
        return None
    acts = probe.run(inputs, [stats.layer], output=False)[stats.layer]
    values = acts.values[:, :, unit].float()
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if isinstance(mask, torch.Tensor) and acts.positions_shape == (mask.shape[-1],):  # as the scan masks
        values = values.masked_fill(mask.to(values.device) == 0, np.nan)
    grid = tuple(acts.positions_shape)
    wider = wider_grid(stats.positions_shape, grid, stats.layer) if stats.positions_shape else grid
    return pad_grid(values, grid, wider).cpu().numpy()
