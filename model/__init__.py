"""TinyGPT model package: `from model import GPTConfig, TinyGPT`."""

from model.gpt import GPTConfig, KVCache, TinyGPT, apply_rope, rope_tables
from model.sampling import check_sampling, filter_logits, sample_logits

__all__ = [
    "GPTConfig",
    "KVCache",
    "TinyGPT",
    "apply_rope",
    "check_sampling",
    "filter_logits",
    "rope_tables",
    "sample_logits",
]
