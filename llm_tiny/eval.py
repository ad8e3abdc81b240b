"""Evaluate a checkpoint: loss, perplexity and bits per byte over a whole split, in non-overlapping windows.

    python -m llm_tiny.eval --ckpt runs/tiny/ckpt_best.pt
    python -m llm_tiny.eval --ckpt runs/tiny/ckpt_best.pt --data other.txt --split all

The split is cut into consecutive block_size windows (the last one shorter), so every token but the first
is predicted exactly once. Bits per byte = total nats / (ln 2 x the UTF-8 bytes of the predicted tokens):
a number that compares across tokenizers. Each run appends a row to eval.csv beside the checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from llm_tiny import checkpoint as ckpt_io
from llm_tiny.corpus import CorpusNotFound
from llm_tiny.data import TokenFile, encode_file, token_byte_lengths
from llm_tiny.engine import bpb_metrics, bpb_sums
from llm_tiny.errors import ArgumentParser, UserError, cli
from llm_tiny.metrics import CSVLogger
from llm_tiny.runtime import pick_device
from model.gpt import TinyGPT

EVAL_FIELDS = ("ckpt", "step", "data", "split", "tokens", "bytes", "loss", "ppl", "bpb")


@torch.no_grad()
def score(
    model: TinyGPT,
    tf: TokenFile,
    token_bytes: torch.Tensor,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Total nats, predicted tokens and their bytes over tf in non-overlapping block_size windows."""
    T, n = model.cfg.block_size, tf.n
    if n < 2:
        raise UserError(f"the text to score has {n} token(s); it needs at least 2")
    ids = torch.from_numpy(tf.array()[:].astype("int64"))
    full = (n - 1) // T  # windows of T predictions each; the rest is one shorter window
    tail = (n - 1) % T
    groups = [
        (torch.arange(b, min(b + batch_size, full)) * T, T) for b in range(0, full, batch_size)
    ]
    if tail:
        groups.append((torch.tensor([full * T]), tail))
    windows = (ids[starts[:, None] + torch.arange(length + 1)] for starts, length in groups)
    batches = ((w[:, :-1], w[:, 1:]) for w in windows)
    return bpb_metrics(bpb_sums(model, batches, token_bytes.to(device)))


def evaluate_checkpoint(
    ckpt_path: str | Path,
    data: str | Path | None = None,
    split: str = "val",
    device: str = "auto",
    batch_size: int = 16,
    cache_dir: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Load a checkpoint and score `data` (default: its training corpus) -> loss, ppl, bpb, ...

    threads: torch CPU threads for this call (default: the run's train.threads, else torch's).
    """
    ck = ckpt_io.load_checkpoint(ckpt_path)
    tcfg = ck["config"].get("train", {}) if isinstance(ck["config"], dict) else {}
    n = threads if threads is not None else tcfg.get("threads")
    before = torch.get_num_threads()
    if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        torch.set_num_threads(n)
    try:
        return _evaluate(ck, ckpt_path, data, split, device, batch_size, cache_dir)
    finally:
        torch.set_num_threads(before)


def _evaluate(
    ck: dict[str, Any],
    ckpt_path: str | Path,
    data: str | Path | None,
    split: str,
    device: str,
    batch_size: int,
    cache_dir: str | None,
) -> dict[str, Any]:
    tok = ckpt_io.tokenizer_of(ck, ckpt_path)
    model = ckpt_io.build_model(ck, ckpt_path)
    dcfg = ck["config"].get("data", {}) if isinstance(ck["config"], dict) else {}
    path = data if data is not None else dcfg.get("path")
    if not path:
        raise UserError(f"{ckpt_path} names no corpus; pass --data FILE")
    val_frac = float(dcfg.get("val_frac", 0.1))
    cache = cache_dir or dcfg.get("cache_dir") or "runs/cache"
    try:
        tf = encode_file(path, tok, split, val_frac, str(cache))
    except CorpusNotFound:
        if data is None:
            raise UserError(
                f"{path}, the corpus {ckpt_path} trained on, is not found: pass --data FILE"
            ) from None
        raise UserError(f"--data {path}: not found (give a file, a folder or a glob)") from None
    dev = pick_device(device, 0)
    model.to(dev)
    out: dict[str, Any] = score(
        model, tf, torch.from_numpy(token_byte_lengths(tok)), batch_size, dev
    )
    out.update(ckpt=str(ckpt_path), step=ck["step"], data=str(path), split=split)
    return out


@cli
def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.eval --ckpt CKPT [--data FILE] [--split val|all]"""
    p = ArgumentParser(
        prog="python -m llm_tiny.eval",
        description="Validation loss, perplexity and bits per byte of a checkpoint.",
        epilog="example: python -m llm_tiny.eval --ckpt runs/tiny/ckpt_best.pt",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file (ckpt_best.pt or ckpt_last.pt)")
    p.add_argument("--data", help="text file to score (default: the corpus the model trained on)")
    p.add_argument(
        "--split",
        choices=("val", "all"),
        default="val",
        help="val: the last data.val_frac of the text (default); all: the whole file",
    )
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--cache_dir", help="token cache folder (default: the run's data.cache_dir)")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: the run's train.threads)"
    )
    a = p.parse_args(argv)
    if a.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {a.batch_size}")
    if a.threads is not None and a.threads < 1:
        raise UserError(f"--threads must be >= 1, got {a.threads}")
    r = evaluate_checkpoint(
        a.ckpt, a.data, a.split, a.device, a.batch_size, a.cache_dir, threads=a.threads
    )
    print(
        f"{r['data']} ({r['split']}, {int(r['tokens']):,} tokens, {int(r['bytes']):,} bytes), "
        f"step {r['step']}: loss {r['loss']:.4f}  ppl {r['ppl']:.2f}  bpb {r['bpb']:.4f}"
    )
    row = {k: r[k] for k in EVAL_FIELDS}
    row["tokens"], row["bytes"] = int(r["tokens"]), int(r["bytes"])
    try:
        CSVLogger(Path(a.ckpt).parent / "eval.csv", EVAL_FIELDS).log(row)
    except (OSError, ValueError) as e:
        print(f"note: could not append to eval.csv: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
