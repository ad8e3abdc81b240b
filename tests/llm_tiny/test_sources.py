"""Corpora as people have them: files, folders, globs, text, JSON Lines and gzip, read back exactly;
the document split (stable, whole documents, about val_frac); bad input named precisely."""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_tiny import corpus as corpus_mod
from llm_tiny.corpus import Scan, documents, find_sources, scan
from llm_tiny.errors import UserError

DOCS = ["To be, or not to be", "héllo wörld 🙂\n", "漢字\r\nline two\n", "x" * 300, "last one."]


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def jsonl(records: list[object]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def texts(sc: Scan, split: str) -> list[str]:
    return ["".join(doc) for doc in documents(sc, split)]


def quiet_scan(spec: str | Path, **kw: object) -> tuple[Scan, list[str]]:
    notes: list[str] = []
    return scan(str(spec), log=notes.append, **kw), notes  # type: ignore[arg-type]


def one_line_error(excinfo: pytest.ExceptionInfo[UserError]) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


# ---- sources ------------------------------------------------------------------------------------


def test_a_file_is_one_source_named_by_its_name(tmp_path: Path) -> None:
    p = write(tmp_path / "sub" / "one.txt", "hi")
    (src,) = find_sources(str(p))
    assert src.path == p and src.name == "one.txt" and not src.jsonl


def test_a_folder_is_every_file_under_it_sorted_hidden_ones_aside(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for rel in ["b.txt", "a/z.txt", "a.txt", "a/b/c.jsonl", "c.txt.gz", "a-b.txt"]:
        write(root / rel, "x")
    for rel in [".hidden.txt", ".git/config", "a/.cache/x.txt", "a/b/.h"]:
        write(root / rel, "x")
    names = [s.name for s in find_sources(str(root))]
    assert names == sorted(["b.txt", "a/z.txt", "a.txt", "a/b/c.jsonl", "c.txt.gz", "a-b.txt"])
    assert [s.jsonl for s in find_sources(str(root))] == [n.endswith(".jsonl") for n in names]


def test_a_glob_names_files_relative_to_its_fixed_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "corpus"
    for rel in ["b.txt", "a/z.txt", "a.txt", "notes.md", "a/b/c.txt"]:
        write(root / rel, "x")
    assert [s.name for s in find_sources(f"{root}/*.txt")] == ["a.txt", "b.txt"]
    assert [s.name for s in find_sources(f"{root}/**/*.txt")] == [
        "a.txt",
        "a/b/c.txt",
        "a/z.txt",
        "b.txt",
    ]
    assert [s.name for s in find_sources(f"{root}/a/*.txt")] == ["z.txt"]
    # the same files named by a glob or by their folder: the same sources in the same order
    assert find_sources(f"{root}/**/*") == find_sources(str(root))
    monkeypatch.chdir(tmp_path)
    assert [s.name for s in find_sources("corpus/*.txt")] == ["a.txt", "b.txt"]
    monkeypatch.chdir(root)
    assert [s.name for s in find_sources("*.txt")] == ["a.txt", "b.txt"]


def test_sources_that_are_not_there_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found") as e:
        find_sources(str(tmp_path / "nope.txt"))
    assert "nope.txt" in one_line_error(e)
    (tmp_path / "empty").mkdir()
    write(tmp_path / "hidden" / ".only.txt", "x")
    for folder in ("empty", "hidden"):
        with pytest.raises(UserError, match="holds no files") as e:
            find_sources(str(tmp_path / folder))
        assert folder in one_line_error(e)
    with pytest.raises(UserError, match="matches no file") as e:
        find_sources(f"{tmp_path}/*.nothing")
    one_line_error(e)


# ---- reading documents back ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["txt", "txt.gz", "jsonl", "jsonl.gz"])
def test_documents_read_back_exactly(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "c"
    if kind.startswith("txt"):
        for i, d in enumerate(DOCS):
            write(root / f"d{i}.{kind}", d)
    else:
        write(root / f"half1.{kind}", jsonl([{"text": d} for d in DOCS[:2]]))
        write(root / f"half2.{kind}", "\n" + jsonl([{"text": d, "n": 1} for d in DOCS[2:]]) + "\n")
    sc, notes = quiet_scan(root)
    assert texts(sc, "all") == DOCS and notes == []
    assert sc.n_docs == len(DOCS) and not sc.single
    assert sc.n_bytes == sum(len(d.encode()) for d in DOCS)


def test_text_field_picks_the_field(tmp_path: Path) -> None:
    p = write(tmp_path / "r.jsonl", jsonl([{"text": "no", "body": d} for d in DOCS]))
    sc, _ = quiet_scan(p, text_field="body")
    assert texts(sc, "all") == DOCS


def test_empty_records_are_no_documents(tmp_path: Path) -> None:
    p = write(tmp_path / "r.jsonl", jsonl([{"text": "one"}, {"text": ""}, {"text": "two"}]))
    sc, _ = quiet_scan(p)
    assert sc.n_docs == 2 and texts(sc, "all") == ["one", "two"]


# ---- the split of many documents ----------------------------------------------------------------


def make_docs(root: Path, n: int, size: int = 0) -> list[str]:
    out = []
    for i in range(n):
        d = (f"document {i} " * (1 + (i * 7) % 13 if not size else 1)).ljust(size, "é")
        write(root / f"{i:03d}.txt", d)
        out.append(d)
    return out


def check_split(sc: Scan, all_docs: list[str]) -> tuple[list[str], list[str]]:
    train, val = texts(sc, "train"), texts(sc, "val")
    assert train and val, "at least one document in each split"
    assert sorted(train + val) == sorted(all_docs), "every document whole, in exactly one split"
    assert [d for d in all_docs if d in set(val)] == val  # corpus order
    sizes = sc.split_sizes()
    assert sizes["train"] == (len(train), sum(len(d.encode()) for d in train))
    assert sizes["val"] == (len(val), sum(len(d.encode()) for d in val))
    return train, val


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 30), frac=st.floats(0.01, 0.99), seed=st.integers(0, 100))
def test_the_split_keeps_documents_whole_and_each_side_non_empty(
    n: int, frac: float, seed: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / f"c{seed}"
        docs = make_docs(root, n)
        sc, _ = quiet_scan(root, val_frac=frac)
        check_split(sc, docs)


def test_the_split_is_stable_across_scans_folders_and_working_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = make_docs(tmp_path / "one" / "corpus", 40)
    first, _ = quiet_scan(tmp_path / "one" / "corpus", val_frac=0.2)
    _, val = check_split(first, docs)
    again, _ = quiet_scan(tmp_path / "one" / "corpus", val_frac=0.2)
    assert texts(again, "val") == val and again.split_key == first.split_key
    shutil.copytree(tmp_path / "one" / "corpus", tmp_path / "elsewhere" / "deeper" / "corpus")
    monkeypatch.chdir(tmp_path / "elsewhere")
    moved, _ = quiet_scan("deeper/corpus", val_frac=0.2)
    assert texts(moved, "val") == val
    assert moved.fingerprint == first.fingerprint and moved.split_key == first.split_key
    globbed, _ = quiet_scan("deeper/corpus/*.txt", val_frac=0.2)
    assert texts(globbed, "val") == val


def test_many_equal_documents_split_about_val_frac_of_the_bytes(tmp_path: Path) -> None:
    docs = make_docs(tmp_path / "c", 200, size=50)
    for frac in (0.05, 0.1, 0.3):
        sc, _ = quiet_scan(tmp_path / "c", val_frac=frac)
        _, val = check_split(sc, docs)
        assert abs(sc.val_bytes / sc.n_bytes - frac) <= 1 / 200
        assert len(val) == round(200 * frac)


def test_records_of_a_jsonl_file_split_as_documents(tmp_path: Path) -> None:
    docs = [f"record {i} " * (1 + i % 5) for i in range(60)]
    sc, _ = quiet_scan(write(tmp_path / "r.jsonl.gz", jsonl([{"text": d} for d in docs])))
    check_split(sc, docs)


# ---- the split of one document ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["one.txt", "one.txt.gz", "one.jsonl", "folder/one.txt"])
@pytest.mark.parametrize("frac", [0.1, 0.37])
def test_one_document_splits_by_bytes_at_a_character_boundary(
    tmp_path: Path, name: str, frac: float
) -> None:
    text = "".join(f"line {i}: ñ漢🙂 é\n" for i in range(200))
    write(tmp_path / name, jsonl([{"text": text}]) if "jsonl" in name else text)
    if name.startswith("folder"):
        write(tmp_path / "folder" / "empty.txt", "")
    sc, _ = quiet_scan(tmp_path / name.split("/")[0], val_frac=frac)
    assert sc.single and sc.n_docs == 1
    train, val = texts(sc, "train"), texts(sc, "val")
    assert len(train) == len(val) == 1 and train[0] + val[0] == text
    data = text.encode()
    want = round(len(data) * (1 - frac))
    cut = len(train[0].encode())
    assert want <= cut <= want + 3  # at most one character later
    assert sc.split_sizes() == {"train": (1, want), "val": (1, len(data) - want)}
    assert texts(sc, "all") == [text]


# ---- bad input ----------------------------------------------------------------------------------


def bad_corpus(root: Path) -> list[str]:
    docs = make_docs(root, 6)
    write(root / "003b.txt", b"good start " * 10 + b"\xc3(" + b" rest")
    return docs


def test_a_bad_file_is_named_with_its_offset(tmp_path: Path) -> None:
    bad_corpus(tmp_path / "c")
    with pytest.raises(UserError) as e:
        scan(str(tmp_path / "c"), log=lambda m: None)
    msg = one_line_error(e)
    assert "003b.txt is not valid UTF-8: byte 0xc3 at offset 110" in msg
    assert "data.on_bad_file=skip" in msg


def test_a_bad_file_is_skipped_with_a_note(tmp_path: Path) -> None:
    docs = bad_corpus(tmp_path / "c")
    sc, notes = quiet_scan(tmp_path / "c", on_bad_file="skip")
    assert texts(sc, "all") == docs and sc.skipped == ["003b.txt"]
    assert notes == ["note: skipped 1 bad file(s) (data.on_bad_file=skip), e.g. 003b.txt"]


def test_bad_utf8_in_a_jsonl_line_names_its_offset(tmp_path: Path) -> None:
    p = write(tmp_path / "r.jsonl", b'{"text": "ok"}\n{"text": "b\xffd"}\n')
    with pytest.raises(UserError, match="r.jsonl is not valid UTF-8: byte 0xff at offset 26"):
        quiet_scan(p)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"text": "unclosed', "r.jsonl:3: not a JSON line"),
        ('{"body": "no text"}', "r.jsonl:3: no string field 'text'"),
        ('{"text": 42}', "r.jsonl:3: no string field 'text'"),
        ('["a", "list"]', "r.jsonl:3: not an object, so no field 'text'"),
        ('"just a string"', "r.jsonl:3: not an object"),
    ],
)
def test_a_bad_jsonl_line_is_named_by_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    write(tmp_path / "c" / "r.jsonl", '{"text": "a"}\n\n' + line + '\n{"text": "b"}\n')
    write(tmp_path / "c" / "s.txt", "fine")
    with pytest.raises(UserError) as e:
        quiet_scan(tmp_path / "c")
    assert needle in one_line_error(e)
    sc, notes = quiet_scan(tmp_path / "c", on_bad_file="skip")
    assert texts(sc, "all") == ["fine"] and "skipped 1 bad file(s)" in notes[0]


def test_empty_files_are_skipped_with_a_note(tmp_path: Path) -> None:
    write(tmp_path / "c" / "a.txt", "alpha")
    write(tmp_path / "c" / "b.txt", "")
    write(tmp_path / "c" / "c.jsonl", "\n\n")
    write(tmp_path / "c" / "d.txt.gz", "")
    write(tmp_path / "c" / "e.txt", "omega")
    sc, notes = quiet_scan(tmp_path / "c")
    assert texts(sc, "all") == ["alpha", "omega"] and sc.n_docs == 2
    assert notes == ["note: skipped 3 empty file(s), e.g. b.txt"]


def test_a_corpus_of_only_empty_files_is_one_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "c" / "a.txt", "")
    write(tmp_path / "c" / "b.jsonl", jsonl([{"text": ""}]))
    with pytest.raises(UserError, match="holds no text") as e:
        quiet_scan(tmp_path / "c")
    one_line_error(e)
    write(tmp_path / "e.txt", "")
    with pytest.raises(UserError, match="is empty"):
        quiet_scan(tmp_path / "e.txt")


def test_a_corpus_whose_files_were_all_skipped_says_so_not_empty(tmp_path: Path) -> None:
    write(tmp_path / "one" / "a.txt", b"ok\xff")
    with pytest.raises(UserError) as e:
        scan(str(tmp_path / "one" / "a.txt"), on_bad_file="skip", log=lambda m: None)
    msg = one_line_error(e)
    assert "its only file was skipped as bad (data.on_bad_file=skip)" in msg
    assert "a.txt is not valid UTF-8: byte 0xff at offset 2" in msg and "empty" not in msg
    write(tmp_path / "two" / "b.txt", "")
    write(tmp_path / "two" / "c.txt", b"\xfe")
    with pytest.raises(UserError, match="of its 2 files, 1 empty, 1 skipped as bad"):
        scan(str(tmp_path / "two"), on_bad_file="skip", log=lambda m: None)


def _gzip_cases() -> dict[str, bytes]:
    good = gzip.compress(("hello world " * 2000).encode())
    return {
        "not gzip": b"plain text, not gzip at all",
        "truncated": good[: len(good) // 2],
        "corrupt stream": good[:30] + bytes([good[30] ^ 0xFF]) + good[31:],
        "bad crc": good[:-8] + bytes(8),
    }


@pytest.mark.parametrize("case", list(_gzip_cases()))
def test_a_corrupt_gzip_file_is_a_clear_error(tmp_path: Path, case: str) -> None:
    write(tmp_path / "c" / "a.txt", "fine")
    (tmp_path / "c" / "b.txt.gz").write_bytes(_gzip_cases()[case])
    with pytest.raises(UserError) as e:
        quiet_scan(tmp_path / "c")
    assert "b.txt.gz is not a valid gzip file" in one_line_error(e)
    sc, notes = quiet_scan(tmp_path / "c", on_bad_file="skip")
    assert texts(sc, "all") == ["fine"] and sc.skipped == ["b.txt.gz"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=0, max_size=60), frac=st.floats(0.0, 1.0))
def test_an_in_memory_document_splits_where_a_file_would(text: str, frac: float) -> None:
    data = text.encode("utf-8", "surrogatepass")
    cut = min(len(data), round(len(data) * (1.0 - frac)))  # the bytes rule, then a char boundary
    while cut < len(data) and data[cut] & 0xC0 == 0x80:
        cut += 1
    train, val = (corpus_mod._text_part(text, frac, s) for s in ("train", "val"))
    assert train.encode("utf-8", "surrogatepass") == data[:cut]
    assert train + val == text
