"""Assertions the resume and fault tests share: a stopped-and-resumed run equals an unbroken one."""

from __future__ import annotations

from pathlib import Path

import torch

from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.runlog import TIMING_FIELDS, read_log


def rows(run: Path) -> list[dict[str, str]]:
    """log.csv rows without the wall-clock columns."""
    return [
        {k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in read_log(run / "log.csv")
    ]


def assert_same_state(a: Path, b: Path) -> None:
    """Equal step, weights and optimizer moments, bit for bit."""
    wa, wb = load_checkpoint(a), load_checkpoint(b)
    assert wa["step"] == wb["step"]
    assert wa["model"].keys() == wb["model"].keys()
    for k in wa["model"]:
        assert torch.equal(wa["model"][k], wb["model"][k]), k
    sa, sb = wa["optimizer"]["state"], wb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys() and sa[i]
        for k, x in sa[i].items():  # AdamW's moments and step, or Muon's momentum
            y = sb[i][k]
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, (i, k)


def random_gpt2(folder: Path, seed: int = 0, std: float = 0.2, **conf: object) -> torch.nn.Module:
    """A GPT2LMHeadModel with every weight random (norms near 1, biases too: transformers' init
    zeroes them), saved by transformers to folder."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # stderr stays the command's own
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**conf)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(1.0 if "ln" in name and name.endswith("weight") else 0.0, std)
    hf.save_pretrained(folder)
    return hf
