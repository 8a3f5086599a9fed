"""A tiny BERT (16 hidden units, two layers, a word-level vocabulary) written to a folder as an hf: model source:
the text-model tests load it offline in well under a second, where the real all-MiniLM-L6-v2 takes seconds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def write_tiny_bert(folder: Path, words: Sequence[str]) -> Path:
    """A BERT folder (config, safetensors weights, tokenizer) over `words`, seeded: the same bytes every run."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder
