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
