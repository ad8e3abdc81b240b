"""Streaming text: safe cuts, block decoding, ordered worker maps, and training/encoding by pieces
giving exactly what the whole text gives, for any block size, piece size and number of workers."""

from __future__ import annotations

import functools
import io
import operator
import time
import warnings
from array import array
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import tok.cli
import tok.parallel
import tok.stream
from tok.bpe import GPT2_PATTERN, GPT4_PATTERN, Tokenizer
from tok.parallel import batched, ordered_map
from tok.patterns import CUTTABLE, ascii_runs, cut_pieces, last_cut, next_cut
from tok.splitter import ASCII_SPLITS
from tok.stream import BadText, count_ids, encode_stream, read_blocks, split_offset, typecode

EOT = "<|endoftext|>"
TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"

# Pieces of text where splits go wrong: whitespace of every kind and in runs, CRLF, contractions,
# digits, non-ASCII letters, emoji (4-byte UTF-8, with modifiers), CJK, NBSP and ideographic
# space (whitespace that is not " "), \x1c (str.isspace() says yes, regex's \s says no).
ATOMS = [
    "a", "Zo", "é", "ß", "漢字", "🙂", "👍🏽", "1", "42", "1234", " ", "  ", "   ", "\u00a0", "\t",
    "\n", "\r\n", "\r", "\n\n", ".", ",", "!?", "'", "'s", "'LL", "-", "\x1c", "\u3000", "\u2028",
    " the", " cat", " 12", " 🙂", " .",
]  # fmt: skip
texts = st.lists(st.sampled_from(ATOMS) | st.text(max_size=3), max_size=60).map("".join)
utf8_texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)  # no lone surrogates
WORDS = ["the", "cat", "sat", "on", "mat", "héllo", "漢字", "🙂", "42", "it's", "don't", "a"]
SEPS = [" ", " ", " ", "  ", "\n", "\r\n", ", ", ". ", "\u00a0", "\t"]
corpora = st.lists(
    st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPS)), min_size=1, max_size=80
).map(lambda ws: "".join(w + s for w, s in ws))


@pytest.fixture(autouse=True)
def small_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few small pieces to a worker task, so that the texts here make many tasks."""
    monkeypatch.setattr(tok.parallel, "TASK_CHARS", 50)


def blocks_of(text: str, sizes: list[int]) -> list[str]:
    """`text` cut into consecutive blocks of the given sizes (the last one repeats)."""
    out, at, k = [], 0, 0
    while at < len(text):
        size = sizes[min(k, len(sizes) - 1)]
        out.append(text[at : at + size])
        at, k = at + size, k + 1
    return out


block_sizes = st.lists(st.integers(1, 12), min_size=1, max_size=8)


# ---- safe cuts ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    text=texts,
    sizes=block_sizes,
    size=st.integers(1, 40),
    pattern=st.sampled_from([GPT4_PATTERN, GPT2_PATTERN]),
)
def test_cut_pieces_join_back_and_split_into_the_chunks_of_the_whole(
    text: str, sizes: list[int], size: int, pattern: str
) -> None:
    pieces = list(cut_pieces(blocks_of(text, sizes), size, pattern in CUTTABLE))
    assert "".join(pieces) == text
    assert all(pieces), "no empty piece"
    assert all(p.startswith(" ") for p in pieces[1:]), "cuts are before a space"
    chunks = [c for p in pieces for c in regex.findall(pattern, p)]
    assert chunks == regex.findall(pattern, text)


@settings(max_examples=100, deadline=None)
@given(text=texts, sizes=block_sizes, size=st.integers(1, 40))
def test_a_pattern_that_cannot_be_cut_gives_one_piece(
    text: str, sizes: list[int], size: int
) -> None:
    assert r"\p{L}+" not in CUTTABLE and "" not in CUTTABLE
    pieces = list(cut_pieces(blocks_of(text, sizes), size, cuttable=False))
    assert pieces == ([text] if text else [])


def test_cut_pieces_cut_where_they_can() -> None:
    text = "one two three four five six seven eight nine ten " * 20
    pieces = list(cut_pieces(blocks_of(text, [7]), 30, True))
    assert len(pieces) > 10 and max(map(len, pieces)) < 60
    # no place to cut (no space with non-whitespace on both sides): one piece, whatever the size
    assert list(cut_pieces(blocks_of("x  y\n z  " * 40, [5]), 3, True)) == ["x  y\n z  " * 40]


@given(text=texts, at=st.integers(0, 80))
def test_last_and_next_cut_are_spaces_between_non_whitespace(text: str, at: int) -> None:
    cuts = [
        i
        for i in range(1, len(text) - 1)
        if text[i] == " " and not text[i - 1].isspace() and not text[i + 1].isspace()
    ]
    assert last_cut(text) == (cuts[-1] if cuts else -1)
    assert next_cut(text, at) == next((i for i in cuts if i >= at), -1)


@settings(max_examples=300, deadline=None)
@given(
    text=texts,
    step=st.integers(1, 30),
    pattern=st.sampled_from([GPT4_PATTERN, GPT2_PATTERN]),
)
def test_ascii_runs_join_back_and_split_into_the_chunks_of_the_whole(
    text: str, step: int, pattern: str
) -> None:
    runs = list(ascii_runs(text, step))
    assert "".join(run for _, run in runs) == text
    assert all(run and run.isascii() == kind for kind, run in runs)
    assert all(
        a[0] != b[0] for a, b in zip(runs, runs[1:], strict=False)
    ), "neighbouring runs differ in kind"
    chunks = [
        c
        for kind, run in runs
        for c in (ASCII_SPLITS[pattern](run) if kind else regex.findall(pattern, run))
    ]
    assert chunks == regex.findall(pattern, text)


# ---- reading blocks -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(text=utf8_texts, block=st.integers(1, 9))
def test_read_blocks_decodes_any_text_for_any_block_size(text: str, block: int) -> None:
    data = text.encode("utf-8")
    seen: list[bytes] = []
    got = list(read_blocks(io.BytesIO(data), "t.txt", block=block, tap=seen.append))
    assert "".join(got) == text
    assert b"".join(seen) == data  # the tap saw every byte once


@settings(max_examples=200, deadline=None)
@given(
    text=utf8_texts, block=st.integers(1, 9), ij=st.tuples(st.integers(0, 80), st.integers(0, 80))
)
def test_read_blocks_reads_a_byte_range(text: str, block: int, ij: tuple[int, int]) -> None:
    i, j = sorted(min(k, len(text)) for k in ij)
    data = text.encode("utf-8")
    start, stop = len(text[:i].encode()), len(text[:j].encode())
    f = io.BytesIO(data)
    f.read(3)  # wherever the file stands, the range is read from `start`
    assert "".join(read_blocks(f, "t", start, stop, block=block)) == text[i:j]
    assert "".join(read_blocks(io.BytesIO(data), "t", start, None, block=block)) == text[i:]


BAD = [b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]


@settings(max_examples=300, deadline=None)
@given(
    text=utf8_texts,
    at=st.integers(0, 80),
    bad=st.sampled_from(BAD),
    block=st.integers(1, 9),
    start_char=st.integers(0, 80),
)
def test_read_blocks_names_the_offset_of_the_first_bad_byte(
    text: str, at: int, bad: bytes, block: int, start_char: int
) -> None:
    at = min(at, len(text))
    head, tail = text[:at].encode(), text[at:].encode()
    data = head + bad + tail
    with pytest.raises(UnicodeDecodeError) as want:
        data.decode("utf-8")
    assert want.value.start == len(head)  # what Python calls the first bad byte
    start = len(text[: min(start_char, at)].encode())  # reading from before it
    with pytest.raises(
        BadText,
        match=rf"^dir/t\.txt is not valid UTF-8: byte 0x{bad[0]:02x} at offset {len(head)} \(",
    ) as got:
        for _ in read_blocks(io.BytesIO(data), "dir/t.txt", start, block=block):
            pass
    assert got.value.offset == len(head) and got.value.name == "dir/t.txt"


@settings(max_examples=200, deadline=None)
@given(text=utf8_texts, frac=st.floats(0.0, 1.0))
def test_split_offset_lands_on_a_character_boundary(text: str, frac: float) -> None:
    data = text.encode("utf-8")
    cut = split_offset(io.BytesIO(data), len(data), frac)
    want = min(len(data), round(len(data) * (1 - frac)))
    assert want <= cut <= min(want + 3, len(data))
    assert (data[:cut].decode() + data[cut:].decode()) == text  # both halves are whole characters
    assert all(data[k] & 0xC0 == 0x80 for k in range(want, cut))  # only continuation bytes skipped


# ---- training and encoding by pieces ------------------------------------------------------------


def pieces_of(text: str, size: int, block: int, pattern: str) -> list[str]:
    return list(cut_pieces(blocks_of(text, [block]), size, pattern in CUTTABLE))


def train_quietly(pieces: list[str], vocab: int, pattern: str, specials, workers: int = 1):
    """Tokenizer.train_pieces without the warning that training a small text stops early."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Tokenizer.train_pieces(pieces, vocab, pattern, specials, workers=workers)


SPECIALS = st.sampled_from([[], [EOT], {EOT: 400, "<|pad|>": 401}])


@settings(max_examples=60, deadline=None)
@given(
    text=corpora,
    size=st.integers(1, 60),
    block=st.integers(1, 30),
    pattern=st.sampled_from([GPT4_PATTERN, GPT2_PATTERN]),
    specials=SPECIALS,
    vocab=st.integers(256, 330),
)
def test_train_pieces_equals_train_on_the_whole_text(
    text: str, size: int, block: int, pattern: str, specials, vocab: int
) -> None:
    vocab = max(vocab, 256 + len(specials))
    text = text.replace("cat", EOT) if specials else text  # special texts are cut out of training
    whole = train_quietly([text], vocab, pattern, specials)
    by_pieces = train_quietly(pieces_of(text, size, block, pattern), vocab, pattern, specials)
    assert by_pieces == whole and by_pieces.to_json() == whole.to_json()


@pytest.mark.parametrize("workers", [2, 3])
@settings(max_examples=6, deadline=None)
@given(text=corpora, size=st.integers(1, 40), specials=SPECIALS)
def test_train_pieces_in_workers_equals_train(workers: int, text: str, size: int, specials) -> None:
    text = text * 3 + (EOT if specials else "")
    whole = train_quietly([text], 300, GPT4_PATTERN, specials)
    pieces = pieces_of(text, size, 7, GPT4_PATTERN)
    assert train_quietly(pieces, 300, GPT4_PATTERN, specials, workers).to_json() == whole.to_json()


def test_train_pieces_in_workers_on_real_text() -> None:
    text = TINY.read_text(encoding="utf-8")[:40_000]
    pieces = pieces_of(text, 2000, 500, GPT4_PATTERN)
    assert len(pieces) > 10
    want = Tokenizer.train(text, 400, special_tokens=[EOT])
    for workers in (1, 2, 3):
        got = Tokenizer.train_pieces(pieces, 400, special_tokens=[EOT], workers=workers)
        assert got == want and got.to_json() == want.to_json()


@pytest.fixture(scope="module")
def tok400() -> Tokenizer:
    return Tokenizer.train(TINY.read_text(encoding="utf-8")[:30_000], 400, special_tokens=[EOT])


def decode_ids(tok: Tokenizer, chunks: list[bytes]) -> list[int]:
    ids = array(typecode(tok.vocab_size))
    for c in chunks:
        ids.frombytes(c)
    return ids.tolist()


@pytest.mark.parametrize("workers", [1, 2, 3])
@settings(max_examples=8, deadline=None)
@given(docs=st.lists(texts | corpora, min_size=1, max_size=6), size=st.integers(1, 40))
def test_encode_stream_is_the_pieces_encoded_in_order(
    tok400: Tokenizer, workers: int, docs: list[str], size: int
) -> None:
    docs = [d + " <|endoftext|> " for d in docs]  # a special text in a document is plain text
    items = [
        (k == 0, piece)
        for doc in docs
        for k, piece in enumerate(pieces_of(doc, size, 9, GPT4_PATTERN))
    ]
    eot = tok400.special_tokens[EOT]
    out = list(encode_stream(tok400, iter(items), workers, sep=eot))
    assert len(out) == len(items)
    want = [i for first, p in items for i in ([eot] if first else []) + tok400.encode_ordinary(p)]
    assert decode_ids(tok400, out) == want
    # and the pieces encode as their whole documents do
    assert want == [i for d in docs for i in [eot] + tok400.encode_ordinary(d)]
    assert want.count(eot) == len(docs)


def test_encode_stream_without_sep_and_big_vocab_ids() -> None:
    tok = Tokenizer(special_tokens={EOT: 70_000})  # ids past 2**16 take 4 bytes each
    out = list(encode_stream(tok, iter([(True, "ab"), (False, " c")]), 2, sep=70_000))
    assert decode_ids(tok, out) == [70_000, 97, 98, 32, 99]
    out = list(encode_stream(tok, iter([(True, "ab"), (True, " c")]), 1))
    assert decode_ids(tok, out) == [97, 98, 32, 99]


@pytest.mark.parametrize("workers", [1, 2])
def test_count_ids_counts_ids_and_bytes(tok400: Tokenizer, workers: int) -> None:
    pieces = ["To be, or not", " to be 🙂", " ñ"]
    n_ids, n_bytes = count_ids(tok400, iter(pieces), workers)
    assert n_ids == sum(len(tok400.encode(p)) for p in pieces)
    assert n_bytes == len("".join(pieces).encode())
    assert count_ids(tok400, iter(pieces), workers, limit=1) == (
        len(tok400.encode(pieces[0])),
        len(pieces[0]),
    )


# ---- ordered_map --------------------------------------------------------------------------------


def slow_square(x: int) -> int:
    """Later items often finish first: the results must still come back in order."""
    time.sleep(0.002 * ((7 * x) % 5))
    return x * x


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ordered_map_keeps_order_and_bounds_what_is_in_flight(workers: int) -> None:
    taken = 0

    def items():
        nonlocal taken
        for i in range(40):
            taken += 1
            yield i

    got, taken_at = [], []
    for r in ordered_map(slow_square, items(), workers):
        got.append(r)
        taken_at.append(taken)
    assert got == [i * i for i in range(40)]
    bound = 1 if workers == 1 else 2 * workers  # the default window: 2 x workers
    for k, t in enumerate(taken_at):  # when result k came back, at most `bound` items were out
        assert t <= k + bound
    assert taken_at[0] == bound  # and the window was used, not one item at a time


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_map_takes_a_partial(workers: int) -> None:
    got = ordered_map(functools.partial(operator.add, 100), iter(range(10)), workers)
    assert list(got) == list(range(100, 110))


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 30), max_size=40), limit=st.integers(1, 60))
def test_batched_keeps_order_and_fills_each_task(sizes: list[int], limit: int) -> None:
    items = list(enumerate(sizes))
    groups = list(batched(iter(items), lambda item: item[1], limit))
    assert [item for g in groups for item in g] == items and all(groups)
    for g in groups[:-1]:  # each full: it reached the limit, and not before its last item
        assert sum(n for _, n in g) >= limit > sum(n for _, n in g[:-1])


def test_batched_defaults_to_the_task_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tok.parallel, "TASK_CHARS", 10)
    assert list(batched(["abcd", "efgh", "ijkl", "m"], len)) == [["abcd", "efgh", "ijkl"], ["m"]]


def test_ordered_map_of_nothing() -> None:
    assert list(ordered_map(slow_square, iter([]), 2)) == []


# ---- the command line ---------------------------------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads a small file in many blocks and pieces, so workers get many tasks."""
    monkeypatch.setattr(
        tok.cli, "read_blocks", functools.partial(tok.stream.read_blocks, block=500)
    )
    monkeypatch.setattr(tok.cli, "PIECE_CHARS", 300)


def test_cli_train_gives_the_same_file_for_any_workers(
    tmp_path: Path, small_blocks: None, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    text = TINY.read_text(encoding="utf-8")[:20_000] + "né 漢字 🙂\r\n"
    corpus.write_text(text, encoding="utf-8", newline="")
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.json"
        argv = ["train", str(corpus), "--vocab", "320", "--out", str(out), "--quiet"]
        assert tok.cli.main([*argv, "--special", EOT, "--workers", str(workers)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert Tokenizer.load(tmp_path / "w1.json") == Tokenizer.train(text, 320, special_tokens=[EOT])
    assert "bytes/token" in capsys.readouterr().out


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_cli_train_refuses_no_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 10, encoding="utf-8")
    argv = ["train", str(corpus), "--vocab", "300", "--out", str(tmp_path / "o.json")]
    assert tok.cli.main([*argv, "--workers", workers]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--workers" in err[0]
    assert not (tmp_path / "o.json").exists()


def test_cli_train_names_the_offset_of_a_bad_byte(
    tmp_path: Path, small_blocks: None, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"hello world " * 100 + b"\xff" + b" more" * 10)
    argv = ["train", str(corpus), "--vocab", "300", "--out", str(tmp_path / "o.json")]
    assert tok.cli.main([*argv, "--workers", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "byte 0xff at offset 1200" in err[0] and str(corpus) in err[0]


def test_cli_train_with_a_special_token_that_holds_a_space(
    tmp_path: Path, small_blocks: None
) -> None:
    # pieces are cut before spaces: a special text with a space in it must not be cut in two,
    # or its halves are learned from as plain text
    corpus = tmp_path / "c.txt"
    text = "".join(f"line {i} of the text<| sep |>and more " for i in range(400))
    corpus.write_text(text, encoding="utf-8")
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.json"
        argv = ["train", str(corpus), "--vocab", "300", "--out", str(out), "--quiet"]
        assert tok.cli.main([*argv, "--special", "<| sep |>", "--workers", str(workers)]) == 0
        assert Tokenizer.load(out) == Tokenizer.train(text, 300, special_tokens=["<| sep |>"])
