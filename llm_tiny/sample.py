"""Sample text from a checkpoint, printing each token as it comes.

    python -m llm_tiny.sample --ckpt runs/tiny/ckpt_best.pt --prompt "Hello" --steps 100 --seed 1

The same checkpoint, prompt, flags and --seed give the same text. Tokens are byte sequences: a character
split across tokens is printed once all of its bytes have arrived. A model trained on many documents
starts, with no prompt, at the start of a document (<|endoftext|>) and stops at the next one, unless
--no-stop.
"""

from __future__ import annotations

import argparse
import codecs
import itertools
import math
import sys
from collections.abc import Iterable, Iterator

import torch

from llm_tiny import checkpoint as ckpt_io
from llm_tiny.data import EOT
from llm_tiny.errors import ArgumentParser, UserError, cli
from llm_tiny.runtime import pick_device
from model.gpt import TinyGPT
from tok.bpe import Tokenizer


def stream(
    model: TinyGPT,
    prompt: list[int],
    steps: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield `steps` sampled token ids one at a time: TinyGPT.stream's, i.e. exactly what
    model.generate returns for the same arguments and generator state (the window rule is there)."""
    model.eval()
    idx = torch.tensor([prompt], device=next(model.parameters()).device)
    for nxt in model.stream(idx, steps, temperature, top_k, top_p, generator):
        yield int(nxt)


def decode_stream(tok: Tokenizer, ids: Iterable[int]) -> Iterator[str]:
    """Text pieces for a stream of ids: a character's bytes are held back until it is complete, and
    bytes that never complete one become U+FFFD at the end."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for i in ids:
        piece = decoder.decode(tok.decode_bytes([i]))
        if piece:
            yield piece
    rest = decoder.decode(b"", final=True)
    if rest:
        yield rest


def check_flags(steps: int, temp: float, top_k: int, top_p: float, num_samples: int) -> None:
    """UserError for a sampling flag out of range."""
    if steps < 0:
        raise UserError(f"--steps must be >= 0, got {steps}")
    if not (temp > 0 and math.isfinite(temp)):
        raise UserError(f"--temp must be a positive number, got {temp}")
    if top_k < 0:
        raise UserError(f"--top_k must be >= 0 (0 turns it off), got {top_k}")
    if not 0 < top_p <= 1:
        raise UserError(f"--top_p must be in (0, 1] (1 turns it off), got {top_p}")
    if num_samples < 1:
        raise UserError(f"--num_samples must be >= 1, got {num_samples}")


def write(text: str) -> None:
    """Print without a newline, now (a terminal that can't show a character gets a replacement)."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        enc = sys.stdout.encoding or "ascii"
        sys.stdout.write(text.encode(enc, "replace").decode(enc))
    sys.stdout.flush()


def generate_text(a: argparse.Namespace) -> None:
    """Load the checkpoint named by the parsed flags and print its samples as they come."""
    ck = ckpt_io.load_checkpoint(a.ckpt)
    tok = ckpt_io.tokenizer_of(ck, a.ckpt)
    model = ckpt_io.build_model(ck, a.ckpt)
    dev = pick_device(a.device, 0)
    model.to(dev)
    eot = tok.special_tokens.get(EOT)
    prompt_text = a.prompt or "\n"
    prompt = tok.encode(prompt_text)
    if eot is not None and a.prompt in ("", "\n"):  # no prompt: the start of a new document
        prompt_text, prompt = "", [eot]
    gen = torch.Generator(device=dev).manual_seed(a.seed)
    top_k = a.top_k or None
    top_p = None if a.top_p >= 1 else a.top_p
    for i in range(a.num_samples):
        if a.num_samples > 1:
            write(f"{'' if i == 0 else chr(10)}--- sample {i + 1} ---\n")
        write(prompt_text)
        ids: Iterable[int] = stream(model, prompt, a.steps, a.temp, top_k, top_p, gen)
        if eot is not None and not a.no_stop:  # the document ends here
            ids = itertools.takewhile(lambda t: t != eot, ids)
        for piece in decode_stream(tok, ids):
            write(piece)
        write("\n")


@cli
def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.sample --ckpt CKPT [--prompt TEXT] [--steps N] ..."""
    p = ArgumentParser(
        prog="python -m llm_tiny.sample",
        description="Generate text from a checkpoint, streaming tokens as they come.",
        epilog='example: python -m llm_tiny.sample --ckpt runs/tiny/ckpt_best.pt --prompt "Hello" '
        "--steps 100 --top_k 50 --top_p 0.95 --temp 0.9 --seed 1",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file")
    p.add_argument("--prompt", default="\n", help='text to continue (default: a newline; "" too)')
    p.add_argument("--steps", type=int, default=200, help="tokens to generate per sample")
    p.add_argument(
        "--temp", "--temperature", type=float, default=0.9, help="softmax temperature, > 0"
    )
    p.add_argument("--top_k", type=int, default=50, help="keep the k likeliest tokens (0: all)")
    p.add_argument("--top_p", type=float, default=0.95, help="nucleus mass in (0, 1] (1: all)")
    p.add_argument("--seed", type=int, default=1, help="same seed, same text")
    p.add_argument("--num_samples", type=int, default=1, help="samples to draw, one after another")
    p.add_argument(
        "--no-stop",
        action="store_true",
        help=f"go on past {EOT} (a corpus of many documents has one before each document); "
        "by default a sample ends there",
    )
    p.add_argument(
        "--device", default="auto", help="auto (default: cuda, else mps, else cpu), cpu, cuda, ..."
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: one token at a time gains nothing from more, and a "
        "busy CPU makes extra threads stall)",
    )
    a = p.parse_args(argv)
    check_flags(a.steps, a.temp, a.top_k, a.top_p, a.num_samples)
    if a.threads < 1:
        raise UserError(f"--threads must be >= 1, got {a.threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(a.threads)
    try:
        generate_text(a)
    finally:
        torch.set_num_threads(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
