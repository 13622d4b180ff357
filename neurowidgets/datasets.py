"""Embedded default model and data: a small CNN trained on the 8×8 handwritten digits.

Real images, offline, with no dependency beyond torch and numpy: ``data/digits.npz`` holds the 1,797
digits of the UCI "Optical Recognition of Handwritten Digits" set exactly as scikit-learn ships them
(``sklearn.datasets.load_digits()``: pixel counts 0–16 and labels, stored as uint8; tests/test_datasets.py
checks them against scikit-learn). The CNN trains in a few seconds on a CPU on first use and is cached
on disk; training is seeded and deterministic.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .core.storage import atomic_file

TRAIN_SETTINGS = {"seed": 0, "epochs": 30, "lr": 3e-3, "batch_size": 64, "test_fraction": 0.25}


def digits_cnn() -> nn.Sequential:
    """The architecture: two conv layers (8 and 16 channels on the 8×8 grid), then an MLP head."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 8, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(16 * 4 * 4, 64),
            relu3=nn.ReLU(),
            fc2=nn.Linear(64, 10),
        )
    )


@dataclass
class Digits:
    """The digits CNN with its data. ``images`` are (N, 1, 8, 8) floats in [0, 1]."""

    model: nn.Sequential
    images: torch.Tensor
    labels: torch.Tensor
    train_index: torch.Tensor
    test_index: torch.Tensor
    test_accuracy: float

    @property
    def test_images(self) -> torch.Tensor:
        return self.images[self.test_index]

    @property
    def test_labels(self) -> torch.Tensor:
        return self.labels[self.test_index]


DIGITS_FILE = Path(__file__).resolve().parent / "data" / "digits.npz"


def load_digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as (N, 1, 8, 8) float32 in [0, 1] and (N,) int64 labels."""
    with np.load(DIGITS_FILE) as data:
        images = torch.from_numpy((data["images"] / 16.0).astype(np.float32)).unsqueeze(1)
        return images, torch.from_numpy(data["labels"].astype(np.int64))


def split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = round(n * test_fraction)
    return order[n_test:].sort().values, order[:n_test].sort().values


def train(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
) -> nn.Sequential:
    """Seeded Adam training on CPU; the same settings give the same weights."""
    torch.manual_seed(seed)
    model = digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def cache_dir() -> Path:
    root = os.environ.get("NEUROWIDGETS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "neurowidgets"
    )
    return Path(root)


def digits(**settings) -> Digits:
    """The digits CNN, trained on first use (a few seconds) and then loaded from the cache.

    Keyword arguments override :data:`TRAIN_SETTINGS` (e.g. ``lr=0.5`` trains a network whose ReLU
    units die, for the dead-unit lessons). Each setting combination is cached separately.
    """
    unknown = set(settings) - set(TRAIN_SETTINGS)
    if unknown:
        raise TypeError(f"unknown training settings {sorted(unknown)}; known: {sorted(TRAIN_SETTINGS)}")
    config = {**TRAIN_SETTINGS, **settings}
    images, labels = load_digit_images()
    train_index, test_index = split(len(images), config["test_fraction"], config["seed"])
    key = hashlib.sha256(json.dumps({"v": 1, **config}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"digits-cnn-{key}.pt"
    model = digits_cnn()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
    else:
        fit = {k: config[k] for k in ("seed", "epochs", "lr", "batch_size")}
        model = train(images[train_index], labels[train_index], **fit)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as file:  # a concurrent reader never sees half a file
            torch.save(model.state_dict(), file)
    acc = accuracy(model, images[test_index], labels[test_index])
    return Digits(model, images, labels, train_index, test_index, acc)
