"""The tokenizer file format, on plain data: a versioned, human-readable JSON text.

    {
      "format": "llm-tiny-bpe",
      "version": 1,
      "pattern": "<split regex>",
      "special_tokens": {"<|endoftext|>": 1000},
      "merges": [
        [101, 32],
        ...
      ]
    }

One merge per line, in rank order (merge k makes the id 256 + k); special tokens by id. The
same tokenizer always gives the same bytes. `dumps` and `loads` know nothing of the
`Tokenizer` class; `write_text` writes a file atomically.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from tok.errors import TokenizerError, is_int

FORMAT = "llm-tiny-bpe"
VERSION = 1


class TokenizerData(NamedTuple):
    """What a tokenizer file holds: merges (pair -> 256 + rank, in rank order), pattern, specials."""

    merges: dict[tuple[int, int], int]
    pattern: str
    special_tokens: dict[str, int]


def dumps(data: TokenizerData) -> str:
    """The canonical JSON text of a tokenizer: one merge per line, stable bytes."""
    merges = ",\n".join(f"    [{a}, {b}]" for a, b in data.merges)
    by_id = dict(sorted(data.special_tokens.items(), key=lambda item: item[1]))
    specials = json.dumps(by_id, ensure_ascii=False)
    return (
        "{\n"
        f'  "format": "{FORMAT}",\n'
        f'  "version": {VERSION},\n'
        f'  "pattern": {json.dumps(data.pattern, ensure_ascii=False)},\n'
        f'  "special_tokens": {specials},\n'
        + ('  "merges": [\n' + merges + "\n  ]\n" if merges else '  "merges": []\n')
        + "}\n"
    )


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A json `object_pairs_hook` that refuses a key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise TokenizerError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """`json.loads` with duplicate keys refused; any problem -> TokenizerError naming it."""
    try:
        return json.loads(text, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise TokenizerError(f"not valid JSON: {err}") from None
    except RecursionError:
        raise TokenizerError("not valid JSON: nested too deeply") from None
    except TokenizerError:
        raise
    except ValueError as err:  # e.g. an integer past Python's 4300-digit conversion limit
        raise TokenizerError(f"not valid JSON: {err}") from None


def loads(text: str) -> TokenizerData:
    """Parse and check a tokenizer's JSON text; any problem -> TokenizerError naming it.

    The merges and special tokens are checked for their shape here, for their meaning (ids
    defined before use) by the `Tokenizer` built from them."""
    if not isinstance(text, str):
        raise TokenizerError(f"tokenizer JSON must be a str, not {type(text).__name__}")
    data = parse_json(text)
    if not isinstance(data, dict):
        raise TokenizerError("a tokenizer file must hold a JSON object")
    expected = {"format", "version", "pattern", "special_tokens", "merges"}
    for key in sorted(expected - data.keys()):
        raise TokenizerError(f"missing field {key!r}")
    for key in sorted(data.keys() - expected):
        raise TokenizerError(f"unknown field {key!r}")
    if data["format"] != FORMAT:
        raise TokenizerError(f"format is {data['format']!r}, expected {FORMAT!r}")
    if not is_int(data["version"]) or data["version"] != VERSION:
        raise TokenizerError(f"unsupported version {data['version']!r} (this reads {VERSION})")
    specials, raw = data["special_tokens"], data["merges"]
    if not isinstance(specials, dict):
        raise TokenizerError("special_tokens must be an object of text -> id")
    if not isinstance(raw, list):
        raise TokenizerError("merges must be a list of [left, right] pairs")
    merges: dict[tuple[int, int], int] = {}
    for rank, item in enumerate(raw):
        if not (isinstance(item, list) and len(item) == 2 and all(map(is_int, item))):
            raise TokenizerError(f"merge {rank} is not a [left, right] pair of ids: {item!r}")
        pair = (item[0], item[1])
        if pair in merges:
            raise TokenizerError(
                f"merge {rank} repeats the pair {list(pair)} of merge {merges[pair] - 256}"
            )
        merges[pair] = 256 + rank
    return TokenizerData(merges, data["pattern"], specials)


def read_text(path: str | os.PathLike[str]) -> str:
    """A tokenizer file's UTF-8 text; TokenizerError if it is not UTF-8, OSError if unreadable."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise TokenizerError(f"{path}: not a UTF-8 text file") from None


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` atomically (a temporary file, then a rename)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(path.parent))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
