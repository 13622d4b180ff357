"""Image inputs: (N, C, H, W) tensors ↔ display pixels, and patch occlusion for what-if probing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ImageAdapter:
    """How a model's image tensors map to display pixels.

    ``mean``/``std`` undo a per-channel normalisation (``x * std + mean``), then ``value_range``
    (the range of the un-normalised values, e.g. (0, 1) or (0, 255)) is mapped to 0…255.
    """

    value_range: tuple[float, float] = (0.0, 1.0)
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    def check(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (batch, channels, height, width) tensor, got {shape}")
        if images.shape[1] not in (1, 3, 4):
            raise ValueError(
                f"images must have 1, 3 or 4 channels on dim 1 (batch, channels, height, width); "
                f"got shape {tuple(images.shape)}"
            )
        return images

    def to_pixels(self, images: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) tensor → (N, H, W, 4) uint8 RGBA, ready for a canvas."""
        x = self.check(images).detach().float().cpu()
        channels = x.shape[1]
        if self.std is not None:
            x = x * torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
        if self.mean is not None:
            x = x + torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
        low, high = self.value_range
        x = ((x - low) / (high - low)).clamp(0, 1).nan_to_num(0.0) * 255
        x = x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        rgba = np.empty((*x.shape[:3], 4), dtype=np.uint8)
        rgba[..., :3] = x[..., :1] if channels == 1 else x[..., :3]
        rgba[..., 3] = x[..., 3] if channels == 4 else 255
        return rgba


def clip_rect(rect: Sequence[float], height: int, width: int) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) in pixels, clipped to the image; None when nothing is left."""
    if len(rect) != 4:
        raise ValueError(f"a patch is (top, left, bottom, right), got {list(rect)}")
    top, left, bottom, right = (round(float(v)) for v in rect)
    top, bottom = max(0, min(top, bottom)), min(height, max(top, bottom))
    left, right = max(0, min(left, right)), min(width, max(left, right))
    if top >= bottom or left >= right:
        return None
    return top, left, bottom, right


def occlude(images: torch.Tensor, rect: Sequence[float], fill: float | Sequence[float] = 0.0) -> torch.Tensor:
    """A copy of ``images`` (N, C, H, W) with the patch ``rect`` set to ``fill`` (clipped to the image)."""
    result = images.clone()
    clipped = clip_rect(rect, images.shape[-2], images.shape[-1])
    if clipped is None:
        return result
    top, left, bottom, right = clipped
    value = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    if value.ndim == 1:
        value = value.view(1, -1, 1, 1)
    result[..., top:bottom, left:right] = value
    return result
