"""Preparing a corpus: the same tokenizer and caches for any number of workers, one <|endoftext|>
before each document, the tokenizer byte cap, resumable caches (Ctrl-C and kill -9), caches that
are never trusted when damaged, and the `python -m llm_tiny.prepare` command."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_YAML

import llm_tiny.data
import llm_tiny.tokens
import tok.parallel
from llm_tiny.checkpoint import load_checkpoint, tokenizer_of
from llm_tiny.config import DataCfg, load_config
from llm_tiny.corpus import documents, scan
from llm_tiny.data import EOT, Corpus, prepare
from llm_tiny.errors import UserError
from llm_tiny.prepare import Split, Summary, run
from llm_tiny.prepare import main as prepare_main
from llm_tiny.tokens import build_cache, open_cache
from llm_tiny.train import main as train_main
from tok.bpe import Tokenizer
from tok.stream import split_offset

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "data" / "tiny.txt"


def make_folder(root: Path, n: int = 20) -> list[str]:
    """n text files of different lengths, some not ASCII, one holding the end-of-text text."""
    text = TINY.read_text(encoding="utf-8")
    docs = []
    for i in range(n):
        start = 997 * i
        doc = text[start : start + 300 + 53 * i]
        if i % 4 == 1:
            doc = doc.replace("e", "é").replace("o", "ö") + " 漢字 🙂\r\n"
        if i == 7:
            doc += f" a literal {EOT} in the text "
        (root / f"part{i:02d}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"part{i:02d}.txt").write_text(doc, encoding="utf-8", newline="")
        docs.append(doc)
    return docs


def make_jsonl(path: Path, n: int = 30) -> list[str]:
    text = TINY.read_text(encoding="utf-8")
    docs = [text[2000 + 400 * i : 2000 + 400 * i + 100 + 17 * i] for i in range(n)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return docs


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("folder") / "corpus"
    return root, make_folder(root)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("jsonl") / "records.jsonl"
    return path, make_jsonl(path)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents cut into small pieces, so that several workers share each one."""
    monkeypatch.setattr(llm_tiny.data, "PIECE_CHARS", 200)
    monkeypatch.setattr(tok.parallel, "TASK_CHARS", 500)  # a few pieces to a task, many tasks


def dcfg(path: Path, cache: Path, **kw: object) -> DataCfg:
    return DataCfg(path=str(path), vocab_size=300, cache_dir=str(cache), **kw)  # type: ignore[arg-type]


def cache_files(c: Corpus) -> dict[str, bytes]:
    assert c.tokenizer_path is not None
    return {
        "tokenizer": c.tokenizer_path.read_bytes(),
        "train": c.train.path.read_bytes(),
        "val": c.val.path.read_bytes(),
    }


def quiet(_: str) -> None:
    pass


# ---- workers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["folder", "records"])
def test_tokenizer_and_caches_are_the_same_for_any_workers(
    tmp_path: Path, small_pieces: None, request: pytest.FixtureRequest, which: str
) -> None:
    path, _ = request.getfixturevalue(which)
    built = [
        cache_files(prepare(dcfg(path, tmp_path / f"w{w}", workers=w), log=quiet))
        for w in (1, 2, 3)
    ]
    assert built[0] == built[1] == built[2]
    assert len(built[0]["train"]) > 1000 and built[0]["val"]


# ---- end-of-text tokens -------------------------------------------------------------------------


def split_at(ids: list[int], sep: int) -> list[list[int]]:
    out: list[list[int]] = []
    for i in ids:
        if i == sep:
            out.append([])
        else:
            out[-1].append(i)  # the first id of a cache is a separator
    return out


@pytest.mark.parametrize("which", ["folder", "records"])
def test_one_end_of_text_before_each_document(
    tmp_path: Path, small_pieces: None, request: pytest.FixtureRequest, which: str
) -> None:
    path, docs = request.getfixturevalue(which)
    c = prepare(dcfg(path, tmp_path / "cache", workers=2), log=quiet)
    eot = c.tokenizer.special_tokens[EOT]
    sc = scan(str(path), log=quiet)
    n_eot = 0
    for split, tf in (("train", c.train), ("val", c.val)):
        ids = tf.array().tolist()
        want = ["".join(d) for d in documents(sc, split)]
        assert ids[0] == eot and ids.count(eot) == len(want) == sc.split_sizes()[split][0]
        got = [c.tokenizer.decode(seg) for seg in split_at(ids, eot)]
        assert got == want  # each document's tokens follow its separator, in corpus order
        assert split_at(ids, eot) == [c.tokenizer.encode(d) for d in want]
        n_eot += ids.count(eot)
    assert n_eot == len(docs)
    assert c.token_bytes[eot] == 0  # the separator stands for no text


def test_a_single_file_has_no_end_of_text_and_splits_by_bytes(tmp_path: Path) -> None:
    p = tmp_path / "one.txt"
    text = TINY.read_text(encoding="utf-8")[:12_000] + "ñ漢🙂 end\n"
    p.write_text(text, encoding="utf-8")
    c = prepare(dcfg(p, tmp_path / "cache", val_frac=0.13, workers=2), log=quiet)
    assert c.tokenizer.special_tokens == {}
    data = p.read_bytes()
    with open(p, "rb") as f:
        cut = split_offset(f, len(data), 0.13)
    assert c.train.array().tolist() == c.tokenizer.encode(data[:cut].decode())
    assert c.val.array().tolist() == c.tokenizer.encode(data[cut:].decode())
    assert c.tokenizer == Tokenizer.train(data[:cut].decode(), 300)  # learned from train only


def test_a_tokenizer_without_end_of_text_joins_documents_with_a_note(
    tmp_path: Path, folder: tuple[Path, list[str]]
) -> None:
    path, _ = folder
    tok_path = tmp_path / "plain.json"
    Tokenizer.train(TINY.read_text(encoding="utf-8")[:5000], 280).save(tok_path)
    notes: list[str] = []
    c = prepare(dcfg(path, tmp_path / "cache", tokenizer=str(tok_path)), log=notes.append)
    assert any(f"has no {EOT} token" in n for n in notes)
    sc = scan(str(path), log=quiet)
    want = "".join("".join(d) for d in documents(sc, "train"))
    assert c.tokenizer.decode(c.train.array().tolist()) == want


# ---- the tokenizer's byte cap -------------------------------------------------------------------


def test_tokenizer_max_bytes_trains_on_less_deterministically(
    tmp_path: Path, folder: tuple[Path, list[str]]
) -> None:
    path, docs = folder
    notes: list[str] = []
    full = prepare(dcfg(path, tmp_path / "full"), log=quiet)
    capped = [
        prepare(dcfg(path, tmp_path / f"cap{k}", tokenizer_max_bytes=3000), log=notes.append)
        for k in (1, 2)
    ]
    assert any("spread over the" in n for n in notes)
    assert capped[0].tokenizer == capped[1].tokenizer != full.tokenizer
    assert cache_files(capped[0]) == cache_files(capped[1])
    tok = capped[0].tokenizer
    assert tok.vocab_size == 300 and EOT in tok.special_tokens
    for d in docs:  # still a working tokenizer of the whole corpus
        assert tok.decode(tok.encode(d)) == d
    assert capped[0].tokenizer_path != full.tokenizer_path  # the cap is part of its name


# ---- resuming -----------------------------------------------------------------------------------


def interrupted(items: list[tuple[bool, str]], k: int) -> Iterator[tuple[bool, str]]:
    """The items, until Ctrl-C arrives before the k-th."""
    for i, item in enumerate(items):
        if i == k:
            raise KeyboardInterrupt
        yield item


@pytest.fixture(scope="module")
def tok300() -> Tokenizer:
    return Tokenizer.train(TINY.read_text(encoding="utf-8")[:20_000], 300, special_tokens=[EOT])


def some_items() -> list[tuple[bool, str]]:
    text = TINY.read_text(encoding="utf-8")[:8000]
    return [(i % 5 == 0, text[200 * i : 200 * (i + 1)]) for i in range(40)]


@pytest.fixture
def one_piece_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each piece its own worker task: a stop after the k-th piece has encoded the ones before."""
    monkeypatch.setattr(tok.parallel, "TASK_CHARS", 1)
    monkeypatch.setattr(llm_tiny.tokens, "SAVE_EVERY_S", 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stopped_build_resumes_to_the_same_cache(
    tmp_path: Path, one_piece_tasks: None, tok300: Tokenizer, workers: int
) -> None:
    items, eot = some_items(), tok300.special_tokens[EOT]
    clean = build_cache(tmp_path / "clean", "k", tok300, iter(items), 1, eot, quiet)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "c", "k", tok300, interrupted(items, 13), workers, eot, quiet)
    part, progress = tmp_path / "c" / "k.bin.part", tmp_path / "c" / "k.part.json"
    assert part.is_file() and progress.is_file() and not (tmp_path / "c" / "k.bin").exists()
    done = json.loads(progress.read_text())
    assert 0 < done["items"] <= 13 and (workers > 1 or done["items"] == 13)
    assert open_cache(tmp_path / "c", "k", tok300) is None  # a part is never a cache
    logs: list[str] = []
    tf = build_cache(tmp_path / "c", "k", tok300, iter(items), workers, eot, logs.append)
    assert any(m.startswith("resuming k.bin") for m in logs)
    assert tf.path.read_bytes() == clean.path.read_bytes() and tf.n == clean.n
    assert (tmp_path / "c" / "k.json").read_text() == (tmp_path / "clean" / "k.json").read_text()
    assert not part.exists() and not progress.exists()
    assert open_cache(tmp_path / "c", "k", tok300) == tf


def test_a_resumed_build_cuts_off_what_was_written_after_the_last_record(
    tmp_path: Path, one_piece_tasks: None, tok300: Tokenizer
) -> None:
    items = some_items()
    clean = build_cache(tmp_path / "clean", "k", tok300, iter(items), 1, None, quiet)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path / "c", "k", tok300, interrupted(items, 9), 1, None, quiet)
    with open(tmp_path / "c" / "k.bin.part", "ab") as f:
        f.write(b"\x01\x02\x03")  # a torn write past the last record
    tf = build_cache(tmp_path / "c", "k", tok300, iter(items), 1, None, quiet)
    assert tf.path.read_bytes() == clean.path.read_bytes()


def test_a_part_without_progress_is_never_used(
    tmp_path: Path, tok300: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = some_items()
    clean = build_cache(tmp_path / "clean", "k", tok300, iter(items), 1, None, quiet)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "k.bin.part").write_bytes(clean.path.read_bytes()[:500])
    assert open_cache(tmp_path / "c", "k", tok300) is None
    logs: list[str] = []
    tf = build_cache(tmp_path / "c", "k", tok300, iter(items), 1, None, logs.append)
    assert not any("resuming" in m for m in logs)
    assert tf.path.read_bytes() == clean.path.read_bytes()


KILL_DRIVER = """
import os, signal, sys
import llm_tiny.data, llm_tiny.tokens, tok.parallel
from llm_tiny.config import DataCfg, load_config
llm_tiny.tokens.SAVE_EVERY_S = 0
llm_tiny.data.PIECE_CHARS = 200
tok.parallel.TASK_CHARS = 500
real, calls = llm_tiny.tokens.atomic_write_text, []
def kill_on_the_4th(path, text):
    calls.append(path)
    if len(calls) == 4:  # 3 progress records on disk, and a 4th piece's ids written after them
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, text)
llm_tiny.tokens.atomic_write_text = kill_on_the_4th
cfg = DataCfg(path=sys.argv[1], vocab_size=300, cache_dir=sys.argv[2], workers=2)
llm_tiny.data.prepare(cfg, log=lambda m: None)
"""


def test_a_killed_prepare_resumes_to_the_same_caches(
    tmp_path: Path, folder: tuple[Path, list[str]], small_pieces: None
) -> None:
    path, _ = folder
    cache = tmp_path / "killed"
    with open(tmp_path / "stderr.txt", "wb") as err:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(KILL_DRIVER), str(path), str(cache)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=300,
        )
    assert done.returncode == -9, (tmp_path / "stderr.txt").read_text()
    (progress,) = cache.glob("*.part.json")
    assert json.loads(progress.read_text())["items"] == 3
    assert not list(cache.glob("*.bin"))  # killed before any cache was finished
    logs: list[str] = []
    resumed = prepare(dcfg(path, cache, workers=2), log=logs.append)
    assert any(m.startswith("resuming") and "3 pieces" in m for m in logs), logs
    clean = prepare(dcfg(path, tmp_path / "clean", workers=1), log=quiet)
    assert cache_files(resumed) == cache_files(clean)
    assert not list(cache.glob("*.part*"))


CTRL_C_DRIVER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, not a background job
import llm_tiny.data, llm_tiny.prepare, llm_tiny.tokens, tok.learn, tok.parallel
tok.learn.MIN_SHARD_CHUNKS = 1  # merges learned in 2 processes
llm_tiny.data.PIECE_CHARS = 200
tok.parallel.TASK_CHARS = 500
llm_tiny.tokens.SAVE_EVERY_S = 0
me, where, calls = os.getpid(), sys.argv[1], []
def ctrl_c_the_group_on_the_5th(real):
    def wrapped(*args):
        if os.getpid() == me:
            calls.append(1)
            if len(calls) == 5:
                os.killpg(0, signal.SIGINT)  # what a terminal does: to every process of the job
        return real(*args)
    return wrapped
if where == "merging":
    tok.learn._Shard.merge = ctrl_c_the_group_on_the_5th(tok.learn._Shard.merge)
else:
    llm_tiny.tokens.atomic_write_text = ctrl_c_the_group_on_the_5th(llm_tiny.tokens.atomic_write_text)
sys.exit(llm_tiny.prepare.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("where", ["merging", "encoding"])
def test_ctrl_c_is_one_line_and_leaves_no_worker_behind(
    tmp_path: Path, folder: tuple[Path, list[str]], yaml_file: Path, where: str
) -> None:
    path, _ = folder
    cache = tmp_path / "c"
    argv = [str(yaml_file), f"data.path={path}", f"data.cache_dir={cache}", "data.workers=2"]
    driver = [sys.executable, "-c", textwrap.dedent(CTRL_C_DRIVER), where, *argv, "--quiet"]
    proc = subprocess.Popen(
        driver, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.decode().splitlines() == ["error: interrupted"]
    for _ in range(100):  # the workers are gone, not left running on their own
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("a worker process outlived the interrupted command")
    assert not list(cache.glob("*.bin"))  # nothing claims to be finished
    if where == "encoding":  # what was done is kept, to resume from
        assert list(cache.glob("*.part.json")) and list(cache.glob("tok-*.json"))
    done = prepare(dcfg(path, cache, workers=2), log=quiet)
    assert cache_files(done) == cache_files(prepare(dcfg(path, tmp_path / "clean"), log=quiet))


def test_a_progress_file_from_other_pieces_is_not_resumed(
    tmp_path: Path, folder: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # ids of pieces cut one way, resumed with pieces cut another way, would skip the wrong text
    path, _ = folder
    monkeypatch.setattr(llm_tiny.tokens, "SAVE_EVERY_S", 0)
    monkeypatch.setattr(llm_tiny.data, "PIECE_CHARS", 200)
    monkeypatch.setattr(tok.parallel, "TASK_CHARS", 500)  # a few pieces to a task, many tasks
    real = llm_tiny.tokens.build_cache

    def stop_after_5(folder: Path, key: str, tok: Tokenizer, items, *rest):  # type: ignore[no-untyped-def]
        return real(folder, key, tok, interrupted(list(items), 5), *rest)

    monkeypatch.setattr(llm_tiny.data, "build_cache", stop_after_5)
    with pytest.raises(KeyboardInterrupt):
        prepare(dcfg(path, tmp_path / "c", workers=1), log=quiet)
    assert list((tmp_path / "c").glob("*.part.json"))
    monkeypatch.undo()  # pieces of the usual size from here on
    logs: list[str] = []
    resumed = prepare(dcfg(path, tmp_path / "c", workers=1), log=logs.append)
    assert not any("resuming" in m for m in logs)  # started over
    clean = prepare(dcfg(path, tmp_path / "clean", workers=1), log=quiet)
    assert cache_files(resumed) == cache_files(clean)


# ---- damaged caches -----------------------------------------------------------------------------


def flip_a_byte(c: Corpus) -> None:
    data = bytearray(c.train.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    c.train.path.write_bytes(bytes(data))


def lie_about_the_count(c: Corpus) -> None:
    meta_path = c.train.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["n_tokens"] -= 1
    meta_path.write_text(json.dumps(meta))


def truncate(c: Corpus) -> None:
    c.train.path.write_bytes(c.train.path.read_bytes()[:-2])


@pytest.mark.parametrize("damage", [flip_a_byte, lie_about_the_count, truncate])
def test_a_damaged_cache_is_rebuilt(
    tmp_path: Path, folder: tuple[Path, list[str]], damage: object
) -> None:
    path, _ = folder
    first = prepare(dcfg(path, tmp_path / "cache"), log=quiet)
    want = cache_files(first)
    damage(first)  # type: ignore[operator]
    tok = first.tokenizer
    key = first.train.path.name.removesuffix(".bin")
    assert open_cache(tmp_path / "cache", key, tok) is None
    again = prepare(dcfg(path, tmp_path / "cache"), log=quiet)
    assert cache_files(again) == want
    assert open_cache(tmp_path / "cache", key, tok) == again.train


def test_a_cache_of_another_tokenizer_is_refused(
    tmp_path: Path, folder: tuple[Path, list[str]], tok300: Tokenizer
) -> None:
    path, _ = folder
    c = prepare(dcfg(path, tmp_path / "cache"), log=quiet)
    key = c.train.path.name.removesuffix(".bin")
    with pytest.raises(UserError, match=r"was encoded with tokenizer \w{12}.*delete"):
        open_cache(tmp_path / "cache", key, tok300)


# ---- the command --------------------------------------------------------------------------------


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text("data: {vocab_size: 300}\n", encoding="utf-8")
    return p


@pytest.fixture
def command(tmp_path: Path, folder: tuple[Path, list[str]], yaml_file: Path) -> list[str]:
    """prepare's arguments for the folder corpus, caches in tmp_path / "c"."""
    return [str(yaml_file), f"data.path={folder[0]}", f"data.cache_dir={tmp_path / 'c'}"]


def test_prepare_command_prints_a_summary(
    tmp_path: Path,
    folder: tuple[Path, list[str]],
    command: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, docs = folder
    argv = command
    assert prepare_main([*argv, "data.workers=2", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    c = prepare(dcfg(path, tmp_path / "c"), log=quiet)  # all cached now
    sizes = scan(str(path), log=quiet).split_sizes()
    assert out[-4] == f"{path}: tokenizer {c.tokenizer_path} (300 ids)"
    for line, (split, tf) in zip(out[-3:-1], (("train", c.train), ("val", c.val)), strict=True):
        n_docs, n_bytes = sizes[split]
        assert line.startswith(f"{split}: {n_docs:,} document(s), ")
        assert f" {tf.n:,} tokens ({n_bytes / tf.n:.2f} bytes/token)" in line
    assert sizes["train"][0] + sizes["val"][0] == len(docs)
    assert out[-1].startswith("tokenizer ") and "peak memory" in out[-1]


def test_prepare_json_is_the_summary_as_data_and_the_text_is_made_from_it(
    folder: tuple[Path, list[str]], command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert prepare_main([*command, "--quiet", "--json"]) == 0
    out, err = capsys.readouterr()
    got = json.loads(out)  # stdout is the JSON alone; notes ("saved tokenizer ...") on stderr
    assert "saved tokenizer" in err
    cost = ("tokenizer_s", "encode_s", "peak_memory_mb")
    assert all(got[k] >= 0 for k in cost) and got["peak_memory_mb"] > 10
    again = dataclasses.asdict(run(load_config(command[0], command[1:]), log=quiet))  # cached now
    assert {k: v for k, v in got.items() if k not in cost} == {
        k: v for k, v in again.items() if k not in cost
    }
    assert got["train"]["documents"] + got["val"]["documents"] == len(folder[1])
    summary = Summary(**{**got, "train": Split(**got["train"]), "val": Split(**got["val"])})
    assert prepare_main([*command, "--quiet"]) == 0  # the human text: the same figures
    text = capsys.readouterr().out.splitlines()[-4:]
    assert text[:3] == summary.text().splitlines()[:3]  # the cost line: this run's own timings


def test_run_returns_the_summary(tmp_path: Path, folder: tuple[Path, list[str]]) -> None:
    path, _ = folder
    cfg = load_config(None, [f"data.path={path}", f"data.cache_dir={tmp_path / 'c'}"])
    s = run(cfg, log=quiet)
    c = prepare(cfg.data, log=quiet)
    assert (s.train.tokens, s.val.tokens, s.vocab_size) == (
        c.train.n,
        c.val.n,
        c.tokenizer.vocab_size,
    )
    assert s.text().splitlines()[1].startswith(f"train: {s.train.documents:,} document(s), ")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.path={tmp}/nope"], "not found"),
        (["data.path={bad}"], "byte 0xff at offset 5"),
        (["data.workers=0"], "data.workers"),
        (["data.on_bad_file=maybe"], "data.on_bad_file"),
        (["data.text_field="], "data.text_field"),
        (["data.tokenizer_max_bytes=0"], "data.tokenizer_max_bytes"),
    ],
)
def test_prepare_command_bad_input_is_one_error_line(
    tmp_path: Path,
    folder: tuple[Path, list[str]],
    yaml_file: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    needle: str,
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.txt").write_text("fine text", encoding="utf-8")
    (bad / "b.txt").write_bytes(b"abcde\xff")
    path, _ = folder
    fill = {"tmp": str(tmp_path), "bad": str(bad)}
    argv = [str(yaml_file), f"data.path={path}", f"data.cache_dir={tmp_path / 'c'}"]
    assert prepare_main([*argv, *(o.format(**fill) for o in overrides), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.bin"))


def test_cache_arrays_are_uint16_for_small_vocabularies(
    tmp_path: Path, records: tuple[Path, list[str]]
) -> None:
    path, _ = records
    c = prepare(dcfg(path, tmp_path / "c"), log=quiet)
    assert c.train.dtype == np.uint16 and c.train.path.stat().st_size == 2 * c.train.n


def test_training_on_a_folder_says_how_many_documents_each_split_has(
    tmp_path: Path, folder: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, docs = folder
    (tmp_path / "cfg.yaml").write_text(TINY_YAML, encoding="utf-8")
    run = tmp_path / "run"
    argv = [str(tmp_path / "cfg.yaml"), f"data.path={path}", f"data.cache_dir={tmp_path / 'c'}"]
    assert train_main([*argv, f"train.out_dir={run}", "train.max_steps=2"]) == 0
    sizes = scan(str(path), log=quiet).split_sizes()
    (n_train, _), (n_val, _) = sizes["train"], sizes["val"]
    assert n_train + n_val == len(docs) and n_val >= 1
    c = prepare(dcfg(path, tmp_path / "c"), log=quiet)
    line = f"{c.train.n:,} train / {c.val.n:,} val tokens in {n_train:,} / {n_val:,} documents "
    assert line in capsys.readouterr().out
    ck = load_checkpoint(run / "ckpt_last.pt")
    assert EOT in tokenizer_of(ck, run / "ckpt_last.pt").special_tokens


# ---- the benchmark harness ----------------------------------------------------------------------


def prepbench_rows(out: str) -> dict[str, list[str]]:
    """The last table's rows by name: cells without the name."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith(("| run", "| ---")):
            name, *cells = (c.strip() for c in line.strip("|").split("|"))
            rows[name] = cells
    return rows


@pytest.fixture
def bench_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # prepbench runs prepare on configs/tiny.yaml
    corpus = tmp_path / "corpus.txt"
    shakespeare = ROOT / "data" / "tinyshakespeare.txt"  # 3.3 MB: long enough to time
    corpus.write_text(shakespeare.read_text(encoding="utf-8") * 3, encoding="utf-8")
    return corpus


def test_prepbench_times_and_measures_each_worker_count(
    bench_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llm_tiny.bench import prepare as prepbench

    assert (
        prepbench.main(["--corpus", str(bench_corpus), "--vocab", "300", "--workers", "1,2"]) == 0
    )
    rows = prepbench_rows(capsys.readouterr().out)
    assert set(rows) == {"ours, 1 worker(s)", "ours, 2 worker(s)"}
    for cells in rows.values():
        tok_s, enc_s, mb_s, total_s, rss, pss = (float(c.replace(",", "")) for c in cells)
        assert 0 < tok_s + enc_s <= total_s and mb_s > 0 and 0 < pss <= rss


def test_prepbench_runs_the_references_on_the_same_ids(
    bench_corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tokenizers", reason="an optional install for the benchmark")
    pytest.importorskip("tiktoken", reason="an optional install for the benchmark")
    from llm_tiny.bench import prepare as prepbench

    argv = ["--corpus", str(bench_corpus), "--vocab", "300", "--workers", "2", "--refs"]
    assert prepbench.main(argv) == 0
    out = capsys.readouterr().out
    assert "ids equal to ours: True" in out
    rows = prepbench_rows(out)
    assert float(rows["HF tokenizers train"][0]) > 0
    assert float(rows["tiktoken, encode_ordinary_batch, 2 threads"][1]) > 0


def test_merge_hosts_are_forked_only_to_train_a_tokenizer(
    tmp_path: Path, folder: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    real = tok.parallel._start_hosts

    def counting(ctx, k):  # type: ignore[no-untyped-def]
        started.append(k)
        return real(ctx, k)

    monkeypatch.setattr(tok.parallel, "_start_hosts", counting)
    path, _ = folder
    prepare(dcfg(path, tmp_path / "c", workers=2), log=quiet)
    assert started == [1]  # one host beside the pool, for the merge loop
    prepare(dcfg(path, tmp_path / "c", workers=2), log=quiet)  # the tokenizer is on disk now
    assert started == [1]
