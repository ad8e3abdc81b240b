"""TinyGPT model package: `from model import GPTConfig, TinyGPT`."""

from model.gpt import (
    GPTConfig,
    KVCache,
    TinyGPT,
    apply_rope,
    filter_logits,
    rope_tables,
    sample_logits,
)

__all__ = [
    "GPTConfig",
    "KVCache",
    "TinyGPT",
    "apply_rope",
    "filter_logits",
    "rope_tables",
    "sample_logits",
]
