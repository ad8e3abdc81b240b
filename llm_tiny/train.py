"""Train a TinyGPT from a YAML config plus `key=value` overrides; resumable bit for bit on CPU.

    python -m llm_tiny.train configs/tiny.yaml train.max_steps=500 model.rope=true
    torchrun --nproc_per_node=2 -m llm_tiny.train configs/tiny.yaml      # data parallel

A run folder (train.out_dir) holds config.yaml, log.csv, ckpt_last.pt and ckpt_best.pt. log.csv gets a row
every log_interval steps and at every evaluation (val_* columns are empty on rows without one); train_loss
is the mean training loss over the steps since the previous row. Step 0 is an evaluation of the untrained
model. Ctrl-C or SIGTERM saves ckpt_last.pt at the end of the current step and exits non-zero;
train.resume=true continues from it. train.init_from=CKPT starts a new run from another run's weights
and tokenizer (fine-tuning; llm_tiny.init_from).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection

from llm_tiny.config import Config, dump_config, read_config, split_args, valid_keys
from llm_tiny.errors import ArgumentParser, cli
from llm_tiny.runtime import process_group
from llm_tiny.suggest import closest_keys
from llm_tiny.trainer import Hooks, Trainer

__all__ = ["Hooks", "Trainer", "main", "run_training"]


def run_training(
    cfg: Config,
    hooks: Hooks | None = None,
    log: Callable[[str], None] = print,
    set_keys: Collection[str] | None = None,
) -> dict[str, float]:
    """Train per cfg (as one process, or one rank of a torchrun job) and return the final metrics:
    step, total_steps, val_loss, val_ppl, val_bpb (fixed validation windows), best_val_loss,
    train_loss, tokens_per_s (last row), params, elapsed_s (training, across resumes; the time budget
    counts this) and prep_s (tokenizer training and token caching in this process). set_keys: the
    dotted keys the user's YAML and overrides set (config.read_config), which train.init_from
    checks against the checkpoint's model; None counts every non-default value as set."""
    hooks = hooks or Hooks()  # this module's Hooks: a test or tool may swap it for the command
    with process_group(cfg.train.device), Trainer(cfg, hooks, log, set_keys) as trainer:
        return trainer.run()


EPILOG = """\
examples:
  python -m llm_tiny.train configs/tiny.yaml train.max_steps=300 train.lr=3e-3 model.rope=true
  python -m llm_tiny.train configs/finetune_tiny.yaml train.init_from=runs/pretrain_tinyshakespeare/ckpt_last.pt
  torchrun --nproc_per_node=N -m llm_tiny.train ...     (data parallel)
  LLM_TINY_CPU_BF16=0 python -m llm_tiny.train configs/shakespeare_cpu.yaml   (fp32 on a bf16 CPU)

resume versus init_from:
  train.resume=true     continue THIS run (train.out_dir) from its ckpt_last.pt: the same step,
                        optimizer state, LR schedule and RNG, as if it had never stopped
  train.init_from=CKPT  start a NEW run from another run's weights (fine-tuning): CKPT's model and
                        tokenizer (the new corpus is encoded with it); optimizer, schedule and step
                        start fresh. A model key other than dropout, attn_dropout and attn that
                        differs from CKPT's is refused. Given both, resume wins once ckpt_last.pt
                        exists (a stopped fine-tuning run continues), else the run starts from CKPT.
  train.overwrite=true  start over in a train.out_dir that holds a run (deletes its checkpoints);
                        without resume or overwrite, such a folder is refused, never wiped
"""


def override_for(flag: str) -> str | None:
    """`--lr` -> `train.lr=...`: settings are overrides here, not flags."""
    close = closest_keys(flag.lstrip("-").replace("-", "_"), valid_keys())
    return f"{close[0]}=..." if close else None


@cli
def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.train [CONFIG] [section.key=value ...]"""
    p = ArgumentParser(
        prog="python -m llm_tiny.train",
        description="Train a TinyGPT from a YAML config and dotted key=value overrides.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        flag_hint=override_for,
    )
    p.add_argument("config", nargs="?", help="YAML config file (default: configs/tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=3e-4")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    a = p.parse_args(argv)
    path, overrides = split_args(a.config, a.overrides)
    cfg, set_keys = read_config(path, overrides)
    if a.print_config:
        print(dump_config(cfg), end="")
        return 0
    run_training(cfg, set_keys=set_keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
