"""Corpora as people have them: sources, documents and the train/validation split, streamed.

`data.path` names a file, a folder (every file under it, hidden ones aside, in sorted order) or a
glob. Files ending in `.jsonl` are JSON Lines, one document per record (its text under
`data.text_field`); any other file is UTF-8 text and one document; either may be gzip-compressed
(`.gz`). `scan` reads everything once, in blocks: it checks every byte (a bad file is named with
the offset, a bad JSON line with its line number), counts documents and bytes, and fingerprints
the corpus. Nothing here holds more than a block or one record in memory.

The split. One document (a single text file): its last `val_frac` of bytes, cut at a character
boundary, is the validation text, as it always was. Many documents: whole documents, never cut
in two, taken in the order of a hash of their names (`path` for a file, `path:line` for a
record) until validation holds as close to `val_frac` of the bytes as whole documents allow, at
least one document and never all. Names are relative to the corpus root, so the choice is the
same on every machine and run.
"""

from __future__ import annotations

import bisect
import glob
import gzip
import hashlib
import io
import json
import os
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from llm_tiny.errors import UserError
from tok.stream import BadText, decode_utf8, read_blocks, split_offset


@dataclass(frozen=True)
class Source:
    """One file of a corpus; `name` is its path relative to the corpus root (stable anywhere)."""

    path: Path
    name: str

    @property
    def jsonl(self) -> bool:
        """Records of JSON Lines, not one text document."""
        return self.name.removesuffix(".gz").endswith(".jsonl")

    def open(self) -> BinaryIO:
        """The file's bytes, decompressed if it is gzip."""
        if self.name.endswith(".gz"):
            return cast(BinaryIO, gzip.open(self.path, "rb"))
        return open(self.path, "rb")


class CorpusNotFound(UserError):
    """No file at a corpus path: the command that asked names its own flag in its message."""


def find_sources(spec: str) -> list[Source]:
    """The files `spec` names: a file, a folder (recursively, sorted) or a glob (sorted); a leading
    ~ is the home folder (a shell leaves `data.path=~/x` as it is)."""
    spec = os.path.expanduser(spec)
    p = Path(spec)
    if p.is_file():
        return [Source(p, p.name)]
    if p.is_dir():
        files = sorted(
            (f for f in p.rglob("*") if f.is_file() and not _hidden(f.relative_to(p))),
            key=lambda f: f.relative_to(p).as_posix(),
        )
        if not files:
            raise UserError(f"corpus folder {p} holds no files")
        return [Source(f, f.relative_to(p).as_posix()) for f in files]
    if glob.has_magic(spec):
        fixed = []  # the folders before the first wildcard: names are relative to them
        for part in Path(spec).parts:
            if glob.has_magic(part):
                break
            fixed.append(part)
        root = Path(*fixed) if fixed else Path(".")
        files = [Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file()]
        if not files:
            raise CorpusNotFound(f"corpus glob {spec!r} matches no file")
        # sorted by name, as a folder is: the same files give the same corpus either way
        return sorted((Source(f, _rel(f, root)) for f in files), key=lambda s: s.name)
    raise CorpusNotFound(f"corpus {p} not found (set data.path=FILE, FOLDER or GLOB)")


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _rel(f: Path, root: Path) -> str:
    try:
        return f.relative_to(root).as_posix()
    except ValueError:
        return f.as_posix()


def doc_hash(name: str) -> float:
    """A document's place in [0, 1), from its name alone: below val_frac means validation."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") / 2**64


@dataclass
class Scan:
    """What one pass over a corpus found; enough to split it and to key its caches."""

    spec: str
    text_field: str
    val_frac: float
    sources: list[Source] = field(default_factory=list)  # the readable, non-empty ones
    skipped: list[str] = field(default_factory=list)  # bad files, with on_bad_file=skip
    why_skipped: list[str] = field(default_factory=list)  # what was wrong with each
    empty: list[str] = field(default_factory=list)
    n_docs: int = 0
    n_bytes: int = 0
    val_docs: int = 0
    val_bytes: int = 0
    fingerprint: str = ""
    val_hashes: array = field(default_factory=lambda: array("d"), repr=False)  # sorted
    hashes: array = field(default_factory=lambda: array("d"), repr=False)  # while scanning
    sizes: array = field(default_factory=lambda: array("q"), repr=False)

    @property
    def single(self) -> bool:
        """One document: split by bytes, no end-of-text separators."""
        return self.n_docs == 1

    def is_val(self, name: str) -> bool:
        """Whether the document `name` belongs to the validation split (many documents)."""
        u = doc_hash(name)
        i = bisect.bisect_left(self.val_hashes, u)
        return i < len(self.val_hashes) and self.val_hashes[i] == u

    def choose_val(self) -> None:
        """Pick the validation documents: in hash order, each one that brings validation closer
        to val_frac of the bytes; at least one (the smallest, if each alone overshoots twice
        over), never all."""
        order = sorted(range(self.n_docs), key=self.hashes.__getitem__)
        target, total, chosen = self.val_frac * self.n_bytes, 0, []
        for i in order:
            if abs(total + self.sizes[i] - target) < abs(total - target):
                chosen.append(i)
                total += self.sizes[i]
        if not chosen:
            chosen = [min(order, key=self.sizes.__getitem__)]
        if len(chosen) == self.n_docs:
            chosen.pop()
        self.val_docs, self.val_bytes = len(chosen), sum(self.sizes[i] for i in chosen)
        self.val_hashes = array("d", sorted(self.hashes[i] for i in chosen))
        self.hashes, self.sizes = array("d"), array("q")

    @property
    def split_key(self) -> str:
        """What decides the split, for naming the caches built from it."""
        if self.single:
            return f"bytes|{self.val_frac!r}"
        return hashlib.sha256(self.val_hashes.tobytes()).hexdigest()

    def split_sizes(self) -> dict[str, tuple[int, int]]:
        """split -> (documents, bytes); one document counts in both splits."""
        if self.single:
            cut = min(self.n_bytes, round(self.n_bytes * (1.0 - self.val_frac)))
            return {"train": (1, cut), "val": (1, self.n_bytes - cut)}
        train = (self.n_docs - self.val_docs, self.n_bytes - self.val_bytes)
        return {"train": train, "val": (self.val_docs, self.val_bytes)}


def _records(f: BinaryIO, name: str, text_field: str) -> Iterator[tuple[int, str, bytes]]:
    """(line number, text, raw line) of each non-blank record of a JSON Lines file."""
    at = 0
    for number, raw in enumerate(f, 1):
        line = decode_utf8(raw, name, at)
        at += len(raw)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise BadRecord(f"{name}:{number}: not a JSON line ({e})") from None
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            what = "no string" if isinstance(record, dict) else "not an object, so no"
            raise BadRecord(f"{name}:{number}: {what} field {text_field!r}")
        yield number, text, raw


class BadRecord(ValueError):
    """A JSON line that is not JSON or has no text field; the message names file and line."""


def scan(
    spec: str,
    text_field: str = "text",
    val_frac: float = 0.1,
    on_bad_file: str = "error",
    log: Callable[[str], None] = print,
    tap: Callable[[bytes], object] | None = None,
) -> Scan:
    """Read every file once: check it, count its documents and bytes, fingerprint the corpus."""
    out = Scan(spec, text_field, val_frac)
    h = hashlib.sha256(f"llm-tiny corpus|{text_field}".encode())
    for src in find_sources(spec):
        try:
            if src.path.stat().st_size == 0:
                out.empty.append(src.name)
                continue
            fh = hashlib.sha256()
            docs = list(_scan_file(src, text_field, fh, tap))
        except (BadText, BadRecord, EOFError, gzip.BadGzipFile, zlib.error) as e:
            if on_bad_file == "error":
                hint = " (data.on_bad_file=skip leaves such files out)"
                raise UserError(f"corpus: {_why(src, e)}{hint}") from None
            out.skipped.append(src.name)
            out.why_skipped.append(_why(src, e))
            continue
        except OSError as e:
            raise UserError(f"corpus: cannot read {src.path}: {e.strerror or e}") from None
        if not docs:
            out.empty.append(src.name)
            continue
        out.sources.append(src)
        h.update(f"|{src.name}|{fh.hexdigest()}".encode())
        for doc_name, size in docs:
            _count(out, doc_name, size)
    if out.empty:
        log(f"note: skipped {len(out.empty)} empty file(s), e.g. {out.empty[0]}")
    if out.skipped:
        log(
            f"note: skipped {len(out.skipped)} bad file(s) (data.on_bad_file=skip), e.g. {out.skipped[0]}"
        )
    if not out.n_docs:
        raise UserError(f"corpus {spec} holds no text: {_nothing_left(out)}")
    out.fingerprint = h.hexdigest()
    if not out.single:
        out.choose_val()
    return out


def _nothing_left(out: Scan) -> str:
    """Why a scan found no document: its files were empty, skipped as bad, or both."""
    n, skip = len(out.empty) + len(out.skipped), "skipped as bad (data.on_bad_file=skip)"
    why = out.why_skipped[0] if out.why_skipped else ""
    if out.skipped and out.empty:
        return f"of its {n} files, {len(out.empty)} empty, {len(out.skipped)} {skip}, e.g. {why}"
    if out.skipped and n == 1:
        return f"its only file was {skip}: {why}"
    if out.skipped:
        return f"all {n} files were {skip}, e.g. {why}"
    return "it is empty" if n == 1 else f"all {n} files are empty"


def _why(src: Source, e: Exception) -> str:
    if isinstance(e, (BadText, BadRecord)):
        return str(e)
    return f"{src.name} is not a valid gzip file ({e})"


def _scan_file(
    src: Source, text_field: str, fh: Any, tap: Callable[[bytes], object] | None
) -> Iterator[tuple[str, int]]:
    """(document name, bytes) of each document of one file, hashing its raw bytes into fh."""

    def seen(data: bytes) -> None:
        fh.update(data)
        if tap is not None:
            tap(data)

    with src.open() as f:
        if src.jsonl:
            for number, text, raw in _records(f, src.name, text_field):
                seen(raw)
                if text:
                    yield f"{src.name}:{number}", len(text.encode("utf-8", "surrogatepass"))
            return
        size = sum(map(len, read_blocks(f, src.name, tap=seen)))
        if size:
            yield src.name, f.tell()


def _count(out: Scan, name: str, size: int) -> None:
    out.n_docs += 1
    out.n_bytes += size
    out.hashes.append(doc_hash(name))
    out.sizes.append(size)


def documents(
    sc: Scan, split: str, tap: Callable[[bytes], object] | None = None
) -> Iterator[Iterator[str]]:
    """The documents of one split ("train", "val" or "all"), each as an iterator of text blocks,
    in corpus order; `tap` sees the bytes read. One document: "train" and "val" are its two byte
    ranges. Consume each document before asking for the next."""
    for src in sc.sources:
        if src.jsonl:
            with src.open() as f:
                for number, text, raw in _records(f, src.name, sc.text_field):
                    if tap is not None:
                        tap(raw)
                    if text and _wanted(sc, f"{src.name}:{number}", split):
                        if sc.single and split != "all":
                            text = _text_part(text, sc.val_frac, split)
                        yield iter((text,))
            continue
        if not sc.single and not _wanted(sc, src.name, split):
            continue
        with src.open() as f:
            start, stop = 0, None
            if sc.single and split != "all":
                cut = split_offset(f, sc.n_bytes, sc.val_frac)
                start, stop = (0, cut) if split == "train" else (cut, None)
            yield read_blocks(f, src.name, start, stop, tap=tap)


def _wanted(sc: Scan, name: str, split: str) -> bool:
    return split == "all" or sc.single or sc.is_val(name) == (split == "val")


def _text_part(text: str, val_frac: float, split: str) -> str:
    """The train or val part of one in-memory document, cut by bytes like a file."""
    data = text.encode("utf-8", "surrogatepass")
    cut = split_offset(io.BytesIO(data), len(data), val_frac)
    part = data[:cut] if split == "train" else data[cut:]
    return part.decode("utf-8", "surrogatepass")
