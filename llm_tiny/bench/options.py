"""The model benchmark's command line and the settings it runs with (shapes, repeats)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from llm_tiny.config import Config
from llm_tiny.errors import ArgumentParser, UserError

DESCRIPTION = (
    "Benchmark a config: training, inference and generation throughput, peak memory, MFU on CUDA."
)


@dataclass
class Settings:
    """How the bench runs: shapes, repeat counts and the device."""

    batch_size: int
    prompt_len: int
    gen_tokens: int
    warmup: int = 2
    repeats: int = 5
    seed: int = 0


def parser() -> ArgumentParser:
    """The command line of python -m llm_tiny.bench."""
    ap = ArgumentParser(prog="python -m llm_tiny.bench", description=DESCRIPTION)
    ap.add_argument(
        "overrides", nargs="*", metavar="[CONFIG] KEY=VALUE", help="config YAML, then overrides"
    )
    ap.add_argument("--config", default=None, help="config YAML (or give it first, positionally)")
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a variant with this override (repeatable; quote several as 'a=1 b=2')",
    )
    ap.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device)"
    )
    ap.add_argument("--batch-size", type=int, default=None, help="default: train.batch_size")
    ap.add_argument("--gen-tokens", type=int, default=None, help="default: min(128, block/2)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak TFLOP/s for MFU (default: a GPU's datasheet bf16 rate, a CPU's measured matmul peak)",
    )
    ap.add_argument(
        "--tokenizer",
        nargs="?",
        const="",
        default=None,
        metavar="CORPUS",
        help="also run the tokenizer benchmark (llm_tiny.bench.tokenizer) on CORPUS (default: data/tiny.txt)",
    )
    ap.add_argument("--out", default=None, help="append the report to this markdown file")
    return ap


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The arguments, checked; a config given first, positionally, moves to args.config."""
    args = parser().parse_args(argv)
    if args.overrides and "=" not in args.overrides[0]:  # `bench configs/tiny.yaml k=v` like train
        if args.config is not None:
            raise UserError(f"two configs given: --config {args.config} and {args.overrides[0]}")
        args.config = args.overrides.pop(0)
    if args.warmup < 0 or args.repeats < 1:
        raise UserError("--warmup must be >= 0 and --repeats >= 1")
    if args.tokenizer and not Path(args.tokenizer).exists():
        raise UserError(f"tokenizer corpus {args.tokenizer} not found")
    return args


def settings(args: argparse.Namespace, base: Config) -> Settings:
    """Shapes and repeat counts: the flags, else the base config's batch and block size."""
    T = base.model.block_size
    prompt_len = max(1, min(16, T // 4))
    s = Settings(
        batch_size=base.train.batch_size if args.batch_size is None else args.batch_size,
        prompt_len=prompt_len,
        gen_tokens=(
            max(1, min(128, T - prompt_len)) if args.gen_tokens is None else args.gen_tokens
        ),
        warmup=args.warmup,
        repeats=args.repeats,
    )
    if s.batch_size < 1 or s.gen_tokens < 1:
        raise UserError("--batch-size and --gen-tokens must be >= 1")
    return s
