"""Data: strict corpus reading, the split, the token cache, batches and their reproducibility."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_tiny.batches import fixed_offsets, get_batch, windows
from llm_tiny.config import DataCfg
from llm_tiny.corpus import documents, scan
from llm_tiny.data import TokenFile, prepare, token_byte_lengths, token_dtype
from llm_tiny.errors import UserError
from llm_tiny.tokens import build_cache, open_cache
from tok.bpe import Tokenizer
from tok.stream import split_offset


def ids_file(tmp_path: Path, n: int, vocab: int = 1000) -> tuple[TokenFile, np.ndarray]:
    ids = (np.arange(n) * 7919 % vocab).astype(np.uint16)
    p = tmp_path / "ids.bin"
    p.write_bytes(ids.tobytes())
    return TokenFile(p, np.dtype(np.uint16), n), ids


class CountingItems:
    """The (starts a document, text) pieces of one text, counting the passes over them (to prove
    the cache is used)."""

    def __init__(self, text: str) -> None:
        self.text, self.passes = text, 0

    def __iter__(self) -> Iterator[tuple[bool, str]]:
        self.passes += 1
        yield True, self.text


def cached(items: CountingItems, key: str, tok: Tokenizer, folder: Path) -> TokenFile:
    """The cache `key` if it is there and good, else built from the items (what prepare does)."""
    return open_cache(folder, key, tok) or build_cache(folder, key, tok, iter(items), log=print)


def split_texts(path: Path, frac: float) -> tuple[str, str]:
    """The train and validation text of a one-document corpus, as prepare reads them."""
    sc = scan(str(path), val_frac=frac, log=lambda m: None)
    assert sc.single
    return tuple("".join(b for d in documents(sc, s) for b in d) for s in ("train", "val"))  # type: ignore[return-value]


# ---- corpus ------------------------------------------------------------------------------------


def test_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        scan(str(tmp_path / "nope.txt"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="holds no files"):
        scan(str(tmp_path / "folder"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        scan(str(tmp_path / "empty.txt"), log=lambda m: None)


@pytest.mark.parametrize("at", [0, 5, 11])
def test_corpus_names_offset_of_first_bad_byte(tmp_path: Path, at: int) -> None:
    good = "héllo wörld!".encode()
    bad = good[:at] + b"\xff" + good[at:]
    (tmp_path / "bad.txt").write_bytes(bad)
    with pytest.raises(UserError, match=f"bad.txt is not valid UTF-8: byte 0xff at offset {at}"):
        scan(str(tmp_path / "bad.txt"))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1), st.floats(0.01, 0.99))
def test_split_is_at_a_character_boundary_and_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, text: str, frac: float
) -> None:
    data = text.encode("utf-8")
    path = tmp_path_factory.mktemp("split") / "one.txt"
    path.write_bytes(data)
    train, val = split_texts(path, frac)
    assert train + val == text
    cut = len(train.encode())
    assert 0 <= cut - round(len(data) * (1 - frac)) <= 3  # at most one character later


def test_token_dtype() -> None:
    assert token_dtype(300) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


# ---- cache -------------------------------------------------------------------------------------


def test_cache_encodes_once_then_reads_the_file(tmp_path: Path, session_tokenizer: Path) -> None:
    tok = Tokenizer.load(session_tokenizer)
    items = CountingItems("To be, or not to be, that is the question.\n" * 20)
    a = cached(items, "k", tok, tmp_path)
    mtime = a.path.stat().st_mtime_ns
    b = cached(items, "k", tok, tmp_path)
    assert items.passes == 1 and a == b and a.path.stat().st_mtime_ns == mtime
    assert a.dtype == np.uint16
    assert a.array().tolist() == tok.encode(items.text)


def test_truncated_cache_is_rebuilt(tmp_path: Path, session_tokenizer: Path) -> None:
    tok = Tokenizer.load(session_tokenizer)
    items = CountingItems("Fair is foul, and foul is fair.\n" * 10)
    a = cached(items, "k", tok, tmp_path)
    want = a.array().tolist()
    a.path.write_bytes(a.path.read_bytes()[:-2])  # a torn write from some other tool
    b = cached(items, "k", tok, tmp_path)
    assert items.passes == 2 and b.array().tolist() == want


def test_cache_with_other_ids_than_its_manifest_is_rebuilt(
    tmp_path: Path, session_tokenizer: Path
) -> None:
    tok = Tokenizer.load(session_tokenizer)
    items = CountingItems("Double, double toil and trouble\n" * 5)
    a = cached(items, "k", tok, tmp_path)
    want = a.array().tolist()
    ids = a.array().copy()
    ids[3] = 40000  # a cache written by a bigger tokenizer under the same name
    a.path.write_bytes(ids.tobytes())
    assert open_cache(tmp_path, "k", tok) is None
    assert cached(items, "k", tok, tmp_path).array().tolist() == want and items.passes == 2


def test_cache_of_another_tokenizer_is_refused(
    tmp_path: Path, session_tokenizer: Path, corpus_text: str
) -> None:
    tok = Tokenizer.load(session_tokenizer)
    cached(CountingItems("Out, damned spot!\n" * 5), "k", tok, tmp_path)
    other = Tokenizer.train(corpus_text, 270)
    with pytest.raises(UserError, match=r"k\.bin was encoded with tokenizer .* delete"):
        open_cache(tmp_path, "k", other)


def test_empty_text_is_nothing_to_encode(tmp_path: Path, session_tokenizer: Path) -> None:
    tok = Tokenizer.load(session_tokenizer)
    with pytest.raises(UserError, match="nothing to encode"):
        cached(CountingItems(""), "k", tok, tmp_path)
    assert not (tmp_path / "k.bin").exists()


def test_token_bytes_count_the_decoded_bytes(session_tokenizer: Path, corpus_text: str) -> None:
    tok = Tokenizer.load(session_tokenizer)
    lengths = token_byte_lengths(tok)
    ids = tok.encode(corpus_text[:2000] + " ñ 漢字 🙂")
    assert int(lengths[ids].sum()) == len(tok.decode_bytes(ids))


# ---- prepare -----------------------------------------------------------------------------------


def test_prepare_trains_tokenizer_once_and_caches(tmp_path: Path, corpus: Path) -> None:
    dcfg = DataCfg(path=str(corpus), vocab_size=280, cache_dir=str(tmp_path / "cache"))
    msgs: list[str] = []
    first = prepare(dcfg, log=msgs.append)
    assert first.tokenizer_path is not None and first.tokenizer_path.is_file()
    assert any("training a 280-token tokenizer" in m for m in msgs)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    msgs.clear()
    second = prepare(dcfg, log=msgs.append)
    assert msgs == []  # nothing trained or encoded the second time
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == stamp
    assert second.tokenizer == first.tokenizer
    assert second.train == first.train and second.val == first.val
    # the tokenizer was trained on the training split only, and the ids are the text's
    data = corpus.read_bytes()
    cut = split_offset(io.BytesIO(data), len(data), dcfg.val_frac)
    train_text, val_text = data[:cut].decode(), data[cut:].decode()
    assert (train_text, val_text) == split_texts(corpus, dcfg.val_frac)
    assert first.train.array().tolist() == first.tokenizer.encode(train_text)
    assert first.val.array().tolist() == first.tokenizer.encode(val_text)


def test_prepare_refuses_a_different_named_tokenizer(
    tmp_path: Path, corpus: Path, session_tokenizer: Path, corpus_text: str
) -> None:
    other = Tokenizer.train(corpus_text, 270)
    dcfg = DataCfg(path=str(corpus), tokenizer=str(session_tokenizer), cache_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"differs from .*tok300.json.*300 tokens"):
        prepare(dcfg, tokenizer=other)


def test_too_short_split_says_its_length_and_need(tmp_path: Path, session_tokenizer: Path) -> None:
    p = tmp_path / "short.txt"
    p.write_text("Out, out, brief candle! " * 8, encoding="utf-8")
    dcfg = DataCfg(path=str(p), tokenizer=str(session_tokenizer), cache_dir=str(tmp_path))
    c = prepare(dcfg)
    with pytest.raises(UserError, match=rf"validation split .* has {c.val.n} tokens.* = 65"):
        c.check_length(64)
    c.check_length(c.val.n - 1)  # exactly one window fits: fine


# ---- batches -----------------------------------------------------------------------------------


def test_batch_shapes_and_shift_by_one(tmp_path: Path) -> None:
    tf, ids = ids_file(tmp_path, 500)
    x, y = get_batch(tf, 6, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
        start = _find(ids, row_x)
        assert row_y == ids[start + 1 : start + 17].tolist()


def _find(ids: np.ndarray, row: list[int]) -> int:
    for s in range(len(ids) - len(row) + 1):
        if ids[s : s + len(row)].tolist() == row:
            return s
    raise AssertionError("window not found in the ids")


def test_batches_are_random_but_reproducible(tmp_path: Path) -> None:
    tf, _ = ids_file(tmp_path, 10_000)
    a = get_batch(tf, 8, 32, torch.Generator().manual_seed(1))[0]
    b = get_batch(tf, 8, 32, torch.Generator().manual_seed(1))[0]
    c = get_batch(tf, 8, 32, torch.Generator().manual_seed(2))[0]
    g = torch.Generator().manual_seed(1)
    get_batch(tf, 8, 32, g)
    d = get_batch(tf, 8, 32, g)[0]  # the next batch from the same generator
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_generator_state_resumes_the_batch_sequence(tmp_path: Path) -> None:
    tf, _ = ids_file(tmp_path, 2000)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        get_batch(tf, 4, 8, g)
    state = g.get_state()
    want = get_batch(tf, 4, 8, g)[0]
    g2 = torch.Generator()
    g2.set_state(state)
    assert torch.equal(get_batch(tf, 4, 8, g2)[0], want)


@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_make_up_the_global_batch(tmp_path: Path, world: int) -> None:
    tf, _ = ids_file(tmp_path, 3000)
    whole = get_batch(tf, 8, 16, torch.Generator().manual_seed(3))
    parts = [get_batch(tf, 8, 16, torch.Generator().manual_seed(3), r, world) for r in range(world)]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 400), block=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_windows_stay_inside_the_data(tmp_path_factory, n: int, block: int, seed: int) -> None:
    if n < block + 1:
        return
    tf, ids = ids_file(tmp_path_factory.mktemp("w"), n)
    x, y = get_batch(tf, 16, block, torch.Generator().manual_seed(seed))
    assert x.shape == (16, block)
    offs = fixed_offsets(tf, block, 7)
    assert offs.min() >= 0 and offs.max() + block + 1 <= n
    fx, fy = windows(tf, offs, block)
    assert torch.equal(fx[:, 1:], fy[:, :-1])


def test_fixed_offsets_are_spread_and_stable(tmp_path: Path) -> None:
    tf, _ = ids_file(tmp_path, 1000)
    a = fixed_offsets(tf, 16, 10)
    assert a.tolist() == fixed_offsets(tf, 16, 10).tolist()
    assert a[0] == 0 and a[-1] == 1000 - 17
    assert np.all(np.diff(a) > 0)


def test_batches_do_not_keep_the_file_mapped(tmp_path: Path) -> None:
    tf, _ = ids_file(tmp_path, 1000)
    x, _ = get_batch(tf, 4, 8, torch.Generator().manual_seed(0))
    assert x.shape == (4, 8)
    maps = Path(f"/proc/{os.getpid()}/maps")
    if maps.exists():  # Linux: the memmap is gone once the batch is made
        assert str(tf.path) not in maps.read_text()


def test_a_given_tokenizer_is_fingerprinted_once_for_both_splits(
    tmp_path: Path, corpus: Path, session_tokenizer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = Tokenizer.load(session_tokenizer)
    calls: list[int] = []
    real = Tokenizer.fingerprint

    def counted(self: Tokenizer) -> str:
        calls.append(1)
        return real(self)

    monkeypatch.setattr(Tokenizer, "fingerprint", counted)
    dcfg = DataCfg(path=str(corpus), cache_dir=str(tmp_path), workers=1)
    c = prepare(dcfg, tokenizer=tok, log=lambda _: None)
    assert len(calls) == 1  # one fingerprint keys, checks and records both caches
    known = real(tok)
    again = prepare(dcfg, tokenizer=tok, log=lambda _: None, fingerprint=known)
    assert len(calls) == 1  # a checkpoint's recorded fingerprint is not computed again
    assert c.fingerprint == again.fingerprint == known and again.train == c.train
