"""What a mistyped key or config path most likely meant: `train.learning_rate` -> `train.lr`.

A key is compared by the words of its name (split at `_`), after mapping the words other trainers use
(nanoGPT's `learning_rate`, `max_iters`, `eval_iters`, ...) to ours, so a key that shares a meaning-bearing
word with ours is found even when the spelling is far off; close spellings are found as well.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path

from llm_tiny.errors import first_sentence

# names other trainers use (nanoGPT, Hugging Face), whole or as words, mapped to ours
ALIASES = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "max_iters": "max_steps",
    "lr_decay_iters": "max_steps",
    "num_train_steps": "max_steps",
    "iters": "steps",
    "iterations": "steps",
    "warmup_iters": "warmup_steps",
    "eval_iters": "eval_batches",
    "gradient_accumulation_steps": "grad_accum",
    "gradient_accumulation": "grad_accum",
    "accumulation": "accum",
    "dtype": "amp",
    "precision": "amp",
    "dataset": "path",
    "n_embed": "n_embd",
    "embed": "embd",
    "d_model": "n_embd",
    "layers": "layer",
    "heads": "head",
    "context": "block_size",
    "seq_len": "block_size",
    "vocab": "vocab_size",
    "output_dir": "out_dir",
    "bs": "batch_size",
}
# words that say little about which key is meant
WEAK = {"n", "max", "min", "size", "s", "num"}


def _words(name: str) -> list[str]:
    name = ALIASES.get(name, name)
    out: list[str] = []
    for w in name.split("_"):
        out.extend(ALIASES.get(w, w).split("_"))
    return [w for w in out if w]


def closest_keys(key: str, keys: list[str], n: int = 3) -> list[str]:
    """Up to n of `keys` (dotted `section.name`) that `key` most likely meant, best first."""
    sec, _, name = key.rpartition(".")
    name = name.lower()
    want = _words(name)
    scored: list[tuple[float, str]] = []
    for k in keys:
        ksec, _, kname = k.partition(".")
        have = _words(kname)
        strong = {w for w in want if w not in WEAK} & {w for w in have if w not in WEAK}
        score = difflib.SequenceMatcher(None, " ".join(want), " ".join(have)).ratio()
        if ALIASES.get(name, name) == kname:
            score += 2.0  # the same name (or its alias), perhaps in another section
        score += len(strong) / max(1, len(set(have) - WEAK))
        if sec == ksec:
            score += 0.1
        if score >= 0.75:
            scored.append((score, k))
    scored.sort(key=lambda s: -s[0])
    # a clear winner stands alone; near-ties are all shown
    return [k for score, k in scored[:n] if score >= scored[0][0] - 0.5]


def missing_config_hint(p: Path, sections: Sequence[str]) -> str:
    """What a config path that does not exist was likely meant to be."""
    if re.fullmatch(r"[a-z]+\.[a-z_0-9]+", str(p)) and str(p).split(".")[0] in sections:
        return f": {p} is a config key; write {p}=VALUE (key=value, no spaces)"
    for suffix in (".yaml", ".yml"):
        if p.with_suffix(suffix).is_file():
            return f" (did you mean {p.with_suffix(suffix)}?)"
    return ""


def not_a_config(p: Path) -> str:
    """The answer to a file given as the config that is not YAML: say how to train on its text."""
    return (
        f"{p} is not a YAML config (sections model, data, train); to train on its text: "
        f"python -m llm_tiny.train configs/tiny.yaml data.path={p}"
    )


def config_file_error(p: Path, e: Exception, sections: Sequence[str]) -> str:
    """The one line for a config file that could not be read: missing, not YAML, or bad YAML."""
    if isinstance(e, FileNotFoundError):
        return f"config file {p} not found{missing_config_hint(p, sections)}"
    if p.suffix not in (".yaml", ".yml"):
        return not_a_config(p)
    return f"cannot read config file {p}: {first_sentence(e, 300)}"
