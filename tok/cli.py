"""The command line: `python -m tok.bpe train|encode|decode`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from tok.errors import TokenizerError, is_int
from tok.parallel import default_workers
from tok.patterns import CUTTABLE, PATTERNS, cut_pieces, pattern_regex
from tok.stream import PIECE_CHARS, BadText, count_ids, decode_utf8, read_blocks
from tok.tokenizer import Tokenizer

_RATIO_PIECES = 64  # pieces of the file that the bytes-per-token figure is measured on


class UsageError(Exception):
    """A command-line mistake, reported as one line and exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise UsageError (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


_TRAIN_EXAMPLES = """examples:
  python -m tok.bpe train data/tiny.txt --vocab 1000 --out tok/bpe.json
  python -m tok.bpe train corpus.txt --vocab 4096 --pattern gpt2 --special '<|endoftext|>' --out big.json
"""
_ENCODE_EXAMPLES = """examples:
  python -m tok.bpe encode --model tok/bpe.json "To be, or not to be"
  python -m tok.bpe encode --model tok/bpe.json --input data/tiny.txt --json > ids.json
  echo "hello" | python -m tok.bpe encode --model tok/bpe.json
"""
_DECODE_EXAMPLES = """examples:
  python -m tok.bpe decode --model tok/bpe.json 434 315 44 524 330 295 315
  python -m tok.bpe decode --model tok/bpe.json --input ids.json
  python -m tok.bpe encode --model tok/bpe.json "hi" | python -m tok.bpe decode --model tok/bpe.json
"""


def _build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog="python -m tok.bpe",
        description="Train a byte-level BPE tokenizer, encode text to ids, decode ids to text.",
        epilog=_TRAIN_EXAMPLES
        + "".join(e.split("\n", 1)[1] for e in (_ENCODE_EXAMPLES, _DECODE_EXAMPLES)),
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,encode,decode}")

    train = sub.add_parser(
        "train", help="learn merges from a text file", epilog=_TRAIN_EXAMPLES, formatter_class=fmt
    )
    train.add_argument("input", metavar="INPUT", help="UTF-8 text file to learn from")
    train.add_argument(
        "--vocab", type=int, required=True, metavar="N", help="ids in all: 256 + merges + specials"
    )
    train.add_argument(
        "--pattern", choices=list(PATTERNS), default="gpt4", help="pre-split regex (default gpt4)"
    )
    train.add_argument(
        "--special",
        nargs="+",
        default=[],
        metavar="TOKEN",
        help="special tokens, e.g. <|endoftext|>",
    )
    train.add_argument("--out", required=True, metavar="PATH", help="where to write the JSON file")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        metavar="N",
        help="processes that count chunks (default: all cores); the result is the same for any N",
    )

    encode = sub.add_parser(
        "encode", help="print the ids of a text", epilog=_ENCODE_EXAMPLES, formatter_class=fmt
    )
    encode.add_argument("--model", required=True, metavar="PATH", help="tokenizer JSON file")
    encode.add_argument("text", nargs="?", metavar="TEXT", help="text to encode (default: stdin)")
    encode.add_argument("--input", metavar="FILE", help="encode this UTF-8 file instead")
    encode.add_argument("--json", action="store_true", help="print a JSON list")
    encode.add_argument(
        "--allow-special", action="store_true", help="turn special-token texts into their ids"
    )

    decode = sub.add_parser(
        "decode", help="print the text of some ids", epilog=_DECODE_EXAMPLES, formatter_class=fmt
    )
    decode.add_argument("--model", required=True, metavar="PATH", help="tokenizer JSON file")
    decode.add_argument("ids", nargs="*", metavar="IDS", help="ids to decode (default: stdin)")
    decode.add_argument(
        "--input", metavar="FILE", help="read ids from a file: whitespace-separated or a JSON list"
    )
    return parser


def _read_text(path: str | None) -> str:
    """A UTF-8 file (or stdin for None), newlines kept exactly as they are."""
    data = Path(path).read_bytes() if path is not None else sys.stdin.buffer.read()
    return decode_utf8(data, path or "standard input")


def _parse_ids(words: list[str]) -> list[int]:
    ids = []
    for word in words:
        try:
            ids.append(int(word))
        except ValueError:
            raise UsageError(f"not an integer id: {word!r}") from None
    return ids


def _write_stdout(text: str) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


@contextlib.contextmanager
def _bar(total: int, quiet: bool, desc: str) -> Iterator[Callable[[bytes], object] | None]:
    """A progress bar over `total` bytes on stderr (None when quiet or stderr is no terminal)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False) as bar:
        yield lambda data: bar.update(len(data))


def _pieces(
    path: str, pattern: str, tap: Callable[[bytes], object] | None, specials: Sequence[str] = ()
) -> Iterator[str]:
    """The file's text in pieces cut where `pattern` allows (see tok.patterns.cut_pieces). Cuts
    are before spaces: with a special-token text that holds one, the file is one piece, since
    training must see each special text whole to leave it out."""
    cuttable = pattern in CUTTABLE and not any(" " in s for s in specials)
    with open(path, "rb") as f:
        yield from cut_pieces(read_blocks(f, path, tap=tap), PIECE_CHARS, cuttable)


def _cmd_train(args: argparse.Namespace) -> None:
    n_special = len(args.special)
    if args.vocab < 256 + n_special:
        raise UsageError(
            f"--vocab must be at least {256 + n_special} (256 bytes + {n_special} special tokens)"
        )
    if not Path(args.out).parent.is_dir():
        raise UsageError(f"--out {args.out}: its directory does not exist")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    pattern, size = pattern_regex(args.pattern), os.stat(args.input).st_size
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, _bar(size, args.quiet, "count") as bar:
        warnings.simplefilter("always")
        tok = Tokenizer.train_pieces(
            _pieces(args.input, pattern, bar, args.special),
            args.vocab,
            pattern,
            args.special,
            progress=not args.quiet,
            workers=args.workers,
        )
    seconds = time.perf_counter() - start
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    tok.save(args.out)
    # bytes per token on (the start of) the file: a whole encoding pass on a big file costs minutes
    pieces = _pieces(args.input, pattern, None)
    n_tokens, n_bytes = count_ids(tok, pieces, args.workers, _RATIO_PIECES)
    where = args.input if n_bytes == size else f"the first {n_bytes / 1e6:.0f} MB of {args.input}"
    ratio = f"{n_bytes / n_tokens:.2f}" if n_tokens else "n/a"
    print(
        f"{len(tok.merges)} merges in {seconds:.2f} s, {ratio} bytes/token on {where} "
        f"-> {args.out} (vocab {tok.vocab_size})"
    )


def _cmd_encode(args: argparse.Namespace) -> None:
    if args.text is not None and args.input is not None:
        raise UsageError("give TEXT or --input FILE, not both")
    tok = Tokenizer.load(args.model)
    text = args.text if args.text is not None else _read_text(args.input)
    ids = tok.encode(text, allowed_special="all" if args.allow_special else "none")
    print(json.dumps(ids) if args.json else " ".join(map(str, ids)))


def _cmd_decode(args: argparse.Namespace) -> None:
    if args.ids and args.input is not None:
        raise UsageError("give IDS or --input FILE, not both")
    tok = Tokenizer.load(args.model)
    if args.ids:
        ids = _parse_ids(args.ids)
    else:
        raw = _read_text(args.input).strip()
        if raw.startswith("["):
            try:
                ids = json.loads(raw)
            except ValueError as err:  # bad JSON, or an integer too long to convert
                raise UsageError(f"the ids are not a valid JSON list: {err}") from None
            if not isinstance(ids, list) or not all(map(is_int, ids)):
                raise UsageError("the ids must be a JSON list of integers")
        else:
            ids = _parse_ids(raw.split())
    _write_stdout(tok.decode(ids))


def main(argv: list[str] | None = None) -> int:
    """Run the `python -m tok.bpe` command line; returns the exit code (2 on bad input)."""
    try:
        args = _build_parser().parse_args(argv)
        {"train": _cmd_train, "encode": _cmd_encode, "decode": _cmd_decode}[args.command](args)
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except (UsageError, TokenizerError, BadText) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        name = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{name}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
