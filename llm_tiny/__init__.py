"""llm-tiny: train a byte-level BPE tokenizer and a tiny GPT from scratch, then sample, evaluate, sweep and benchmark it."""

__version__ = "0.1.0"
