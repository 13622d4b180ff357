"""Feature visualization: an input optimised to drive one unit as high (or low) as it goes.

Plain gradient ascent on pixels finds high-frequency noise that a unit answers to and no person can
read. The regularizers of Olah et al. (2017, "Feature Visualization"; Lucid and Lucent implement them)
make it readable: the image is parameterised in a frequency space scaled by 1/frequency (low
frequencies move first) and in decorrelated colour (ImageNet's colour covariance), squashed into the
valid range by a sigmoid, and each step sees it slightly jittered, scaled and rotated, so that only
patterns robust to those survive. Each regularizer can be turned off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attribution import Objective, Position, frozen
from .images import ImageAdapter
from .probe import INPUT, Probe
from .threads import measured_threads, torch_threads

# Elementwise and increasing: the unit is highest where its input is, and the input has a gradient where
# the unit is flat (a ReLU at zero), so the first steps climb the input out of the dead zone (Lucid
# redirects ReLU gradients early on for the same reason).
_MONOTONE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.Hardtanh)
WARMUP_STEPS = 16

# The square root of ImageNet's RGB colour correlation (Lucid's color_correlation_svd_sqrt): optimising
# in the space it maps from gives every direction of colour the same step size.
_COLOUR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOUR = torch.from_numpy(_COLOUR_SQRT / np.max(np.linalg.norm(_COLOUR_SQRT, axis=0)))


def _input_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.in_channels
    return None


class _Image(nn.Module):
    """The optimised parameters and the map from them to an image in [0, 1]."""

    def __init__(self, channels: int, height: int, width: int, fft: bool, decorrelate: bool, generator):
        super().__init__()
        self.shape, self.fft, self.decorrelate = (channels, height, width), fft, decorrelate and channels == 3
        if fft:
            fy = torch.fft.fftfreq(height)[:, None]
            fx = torch.fft.rfftfreq(width)[None, :]
            frequencies = (fx * fx + fy * fy).sqrt()
            # 1/f: each frequency's step proportional to its share of natural images' energy.
            self.register_buffer("scale", math.sqrt(height * width) / frequencies.clamp(min=1.0 / max(height, width)))
            spectrum = torch.randn(channels, height, width // 2 + 1, 2, generator=generator) * 0.01
            self.param = nn.Parameter(spectrum)
        else:
            self.param = nn.Parameter(torch.randn(channels, height, width, generator=generator) * 0.01)

    def forward(self) -> torch.Tensor:
        _, height, width = self.shape
        if self.fft:
            spectrum = torch.view_as_complex(self.param) * self.scale
            image = torch.fft.irfftn(spectrum, s=(height, width), norm="ortho") / 4.0  # Lucid's constant
        else:
            image = self.param
        if self.decorrelate:
            image = torch.einsum("ij,jhw->ihw", _COLOUR, image)
        return torch.sigmoid(image).unsqueeze(0)


def _transform(image: torch.Tensor, jitter: int, scale: float, rotate: float, generator) -> torch.Tensor:
    """One random affine of ``image``: a shift of up to ``jitter`` pixels, a zoom within 1 ± ``scale``,
    a rotation within ± ``rotate`` degrees (edges reflected)."""
    if not (jitter or scale or rotate):
        return image
    height, width = image.shape[-2:]
    u = torch.rand(4, generator=generator) * 2 - 1
    angle = math.radians(rotate) * u[0]
    zoom = 1 + scale * u[1]
    shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).float() if jitter else torch.zeros(2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.tensor([[cos, -sin, 2 * shift[0] / width], [sin, cos, 2 * shift[1] / height]], dtype=image.dtype)
    grid = F.affine_grid(theta.unsqueeze(0), list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, padding_mode="reflection", align_corners=False)


def visualize(
    probe: Probe,
    layer: str | None,
    unit: int,
    *,
    size: int | tuple[int, int],
    position: Position = None,
    negative: bool = False,
    steps: int = 256,
    channels: int | None = None,
    adapter: ImageAdapter | None = None,
    seed: int = 0,
    lr: float = 0.05,
    fft: bool = True,
    decorrelate: bool = True,
    jitter: int | None = None,
    scale: float = 0.05,
    rotate: float = 5.0,
    progress: Callable[[int, int, float], Any] | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """An input to an image model optimised to maximise ``unit`` of ``layer`` (``negative=True``: minimise).

    ``position=None`` maximises the unit summed over its positions (a channel everywhere); ``"center"``
    (or an int / grid coordinates) one position, e.g. a channel's spatial centre. ``layer=None``: an
    output entry (a class logit). ``size``: the image's (height, width); ``channels``: the input's
    channels (default: the first convolution's, else 3). ``adapter`` maps the optimised [0, 1] pixels
    to the model's input (its ``value_range``, ``mean`` and ``std``); default: the model takes [0, 1].

    Regularizers, each with a switch: ``fft`` (frequency-space parameterisation), ``decorrelate`` (colour
    decorrelation, for 3 channels), ``jitter`` (pixels; default a 32nd of the size, so none below 32
    pixels), ``scale`` (relative zoom), ``rotate`` (degrees).
    A monotone activation's unit (a ReLU's) is first pushed through its input for a few steps, which
    has a gradient where the unit is still zero. ``seed`` fixes the start and the random transforms
    (the global random state is not touched).
    ``progress(step, steps, value)`` is called after each step with the unit's value on that step's
    transformed image; raise from it to cancel. ``threads``: torch's intra-op threads for the steps;
    default: the first two steps time the current number against one, and the rest use the faster
    (a small model runs far faster on one, see :mod:`neurowidgets.core.threads`).
    Returns the (1, channels, height, width) model input.
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    channels = channels or _input_channels(probe.model) or 3
    if jitter is None:  # Lucid jitters 224-pixel images by about 8 pixels; a shift of 1 in 8 is a new image
        jitter = max(height, width) // 32
    adapter = adapter or ImageAdapter()
    sign = -1.0 if negative else 1.0
    objective = Objective(probe, layer, unit, position, sign)
    warmup = objective
    if layer is not None and objective.info.base is None and not layer.endswith(INPUT):
        if isinstance(probe.module_of(layer), _MONOTONE):
            warmup = Objective(probe, layer + INPUT, unit, position, sign)
    generator = torch.Generator().manual_seed(seed)
    image = _Image(channels, height, width, fft, decorrelate, generator)
    optimiser = torch.optim.Adam(image.parameters(), lr=lr)
    low, high = adapter.value_range
    mean = torch.tensor(adapter.mean if adapter.mean is not None else [0.0]).view(1, -1, 1, 1)
    std = torch.tensor(adapter.std if adapter.std is not None else [1.0]).view(1, -1, 1, 1)

    def model_input(pixels: torch.Tensor) -> torch.Tensor:
        return ((pixels * (high - low) + low) - mean) / std

    with frozen(probe.model):

        def one_step(step: int) -> None:
            optimiser.zero_grad()
            with torch.enable_grad():
                pixels = _transform(image(), jitter, scale, rotate, generator)
                target = warmup if step <= min(WARMUP_STEPS, steps // 4) else objective
                value = target(model_input(pixels).to(probe.device)).sum()
                (-value).backward()
            optimiser.step()
            if progress is not None:
                progress(step, steps, float(value.detach()) * sign)

        first = 1
        if threads is None and steps >= 2:
            threads = measured_threads(lambda: one_step(1), lambda: one_step(2), probe.device)
            first = 3
        with torch_threads(threads):
            for step in range(first, steps + 1):
                one_step(step)
        with torch.no_grad():
            return model_input(image()).detach().to(probe.device)
