"""The tokenizer library: round trips, training, merge order, special tokens, save/load."""

from __future__ import annotations

import itertools
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import tok.bpe as bpe
from tok import GPT2_PATTERN, GPT4_PATTERN, PATTERNS, Tokenizer, TokenizerError, merges, patterns

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def text() -> str:
    return TINY.read_text(encoding="utf-8")


@pytest.fixture(scope="module", params=["gpt4", "gpt2", "none"])
def tok(request: pytest.FixtureRequest, text: str) -> Tokenizer:
    """A 400-id tokenizer per pattern, trained on a slice of data/tiny.txt."""
    return Tokenizer.train(text[:20_000], 400, pattern=PATTERNS[request.param])


@pytest.fixture(scope="module")
def tok4(text: str) -> Tokenizer:
    return Tokenizer.train(text[:30_000], 600, special_tokens=[EOT])


def slow_train(text: str, n_merges: int, pattern: str = GPT4_PATTERN) -> list[tuple[int, int]]:
    """Textbook BPE: recount every pair from scratch at every step (slow, obviously right)."""
    chunks = regex.findall(pattern, text) if pattern else [text]
    words = Counter(tuple(c.encode("utf-8")) for c in chunks)
    merges: list[tuple[int, int]] = []
    for step in range(n_merges):
        counts: Counter[tuple[int, int]] = Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:], strict=False):
                counts[pair] += freq
        best = max(counts.values(), default=0)
        if best < 2:
            break
        pair = min(p for p, c in counts.items() if c == best)  # the documented tie-break
        merges.append(pair)
        merged: Counter[tuple[int, ...]] = Counter()
        for word, freq in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == pair:
                    out.append(256 + step)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    return merges


# -- round trips --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(s=st.text())
def test_round_trip_any_text(tok: Tokenizer, s: str) -> None:
    assert tok.decode(tok.encode(s)) == s


@settings(max_examples=100, deadline=None)
@given(s=st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_decode_bytes_is_the_utf8_of_the_text(tok: Tokenizer, s: str) -> None:
    assert tok.decode_bytes(tok.encode(s)) == s.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decode_never_raises_on_valid_ids(tok4: Tokenizer, data: st.DataObject) -> None:
    valid = st.sampled_from(sorted(tok4.vocab) + list(tok4.special_tokens.values()))
    ids = data.draw(st.lists(valid, max_size=50))
    out = tok4.decode(ids)
    assert isinstance(out, str)
    assert out.encode("utf-8", "surrogatepass").decode("utf-8") == out  # a real UTF-8 string


@settings(max_examples=100, deadline=None)
@given(s=st.text(max_size=80))
def test_json_round_trip_keeps_the_encoding(tok4: Tokenizer, s: str) -> None:
    again = Tokenizer.from_json(tok4.to_json())
    assert again.encode(s) == tok4.encode(s)
    assert again.encode(s, allowed_special="all") == tok4.encode(s, allowed_special="all")


def test_save_load_gives_the_same_tokenizer(tok4: Tokenizer, tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.json"
    tok4.save(path)
    loaded = Tokenizer.load(path)
    assert loaded == tok4
    assert loaded.fingerprint() == tok4.fingerprint()
    sample = text[5000:9000] + EOT + "tail"
    assert loaded.encode(sample, "all") == tok4.encode(sample, "all")
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary file left


WHITESPACE = [
    "  leading spaces",
    "trailing spaces   ",
    "\ttabs\tin\t\tthe middle\t",
    "windows\r\nline\r\nends\r\n",
    "blank\n\n\nlines\n \n\t\n",
    "non\u00a0breaking\u00a0\u00a0space",
    "ideographic\u3000space\u3000\u3000",
    " ",
    "\n",
    "   \t \r\n \u3000\u00a0 ",
    "a  b   c    d",
    "mixed \t\r\n\u2028\u2029\x0b\x0c\x1c\x85 end",
]


@pytest.mark.parametrize("s", WHITESPACE)
def test_whitespace_round_trips(tok: Tokenizer, s: str) -> None:
    assert tok.decode(tok.encode(s)) == s


UNICODE = [
    "emoji 🙂👍🏽 family 👨‍👩‍👧",
    "中文字符和日本語のテキスト",
    "עברית وعربي RTL",
    "combining e\u0301 a\u0308 \u0301alone",
    "control \x00\x01\x07\x1b[0m",
    "numbers 1234567 3.14159 1,000,000",
    "it's they're we've I'll he'd I'M",
]


@pytest.mark.parametrize("s", UNICODE)
def test_unicode_round_trips(tok: Tokenizer, s: str) -> None:
    assert tok.decode(tok.encode(s)) == s


def test_hundred_random_lines_of_the_corpus(tok: Tokenizer, text: str) -> None:
    lines = text.splitlines(keepends=True)
    for line in random.Random(0).sample(lines, 100):
        assert tok.decode(tok.encode(line)) == line


def test_the_whole_corpus_round_trips_and_compresses(tok4: Tokenizer, text: str) -> None:
    ids = tok4.encode(text)
    assert tok4.decode(ids) == text
    assert len(text.encode()) / len(ids) > 2.0  # 600 ids on English text


def test_empty_string(tok: Tokenizer) -> None:
    assert tok.encode("") == []
    assert tok.encode("", allowed_special="all") == []
    assert tok.decode([]) == ""
    assert tok.decode_bytes([]) == b""


def test_lone_surrogates_become_replacement_characters(tok4: Tokenizer) -> None:
    assert tok4.decode(tok4.encode("a\ud800b")) == "a\ufffdb"


def test_invalid_utf8_decodes_to_replacement_character(tok4: Tokenizer) -> None:
    e_acute = "é".encode()
    assert tok4.decode([e_acute[0]]) == "\ufffd"
    assert tok4.decode([0xFF, ord("a")]) == "\ufffda"
    assert tok4.decode_bytes([e_acute[0]]) == e_acute[:1]


def test_decoding_an_unknown_id_is_a_clear_error(tok4: Tokenizer) -> None:
    for bad in [tok4.vocab_size, -1, 10**9, "3", None, [1]]:
        with pytest.raises(TokenizerError, match="unknown token id"):
            tok4.decode([1, 2, bad])  # type: ignore[list-item]
    with pytest.raises(TokenizerError, match="unknown token id"):
        tok4.decode([tok4.vocab_size])  # the one-id path too


def test_decode_accepts_iterators_and_arrays(tok4: Tokenizer) -> None:
    np = pytest.importorskip("numpy")
    ids = tok4.encode("To be, or not to be")
    assert tok4.decode(iter(ids)) == "To be, or not to be"
    assert tok4.decode(np.array(ids, dtype=np.uint16)) == "To be, or not to be"


# -- the fast space-split path ------------------------------------------------------------

SPACEY = st.lists(
    st.sampled_from(
        [" ", " ", " ", "\n", "\n", "\r", "\r\n", "\t", "\u00a0", "\u3000", "\x1c", "a", "B"]
        + ["é", "7", "'", "s", "t", ".", ",", "!", "中", "🙂", "\x00", "\ue000"]
    ),
    max_size=40,
).map("".join)


@pytest.fixture(scope="module")
def gpt_toks(text: str) -> list[Tokenizer]:
    """Tokenizers with the two patterns that take the fast path."""
    return [Tokenizer.train(text[:20_000], 400, pattern=p) for p in (GPT4_PATTERN, GPT2_PATTERN)]


@settings(max_examples=400, deadline=None)
@given(s=SPACEY)
def test_space_split_fast_path_equals_the_plain_regex_split(
    gpt_toks: list[Tokenizer], s: str
) -> None:
    for t in gpt_toks:
        assert t.encode(s) == t._encode_split(s)
        cold = Tokenizer(t.merges, pattern=t.pattern)  # empty caches: the batch path
        assert cold.encode(s) == t._encode_split(s)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(SPACEY, max_size=12))
def test_fast_path_batches_many_pieces(gpt_toks: list[Tokenizer], lines: list[str]) -> None:
    # Many pieces of every shape in one batch, from empty caches.
    for text in ("\n".join(lines), " ".join(lines), "  ".join(lines)):
        for t in gpt_toks:
            assert Tokenizer(t.merges, pattern=t.pattern).encode(text) == t._encode_split(text)


def test_id_strings_convert_to_ints_across_the_whole_id_range() -> None:
    # Caches hold ids as characters; ids 0xD800..0xDFFF are lone surrogates, which must survive.
    ids = [0, 255, 256, 0xD7FF, 0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xE000, sys.maxunicode]
    assert merges.ids_of("".join(map(chr, ids))) == ids
    assert merges.ids_of("") == []


def test_the_merge_limit_leaves_a_character_for_no_id() -> None:
    limit = sys.maxunicode - 256
    with pytest.raises(TokenizerError, match=f"too many merges: {limit + 1} > {limit}"):
        Tokenizer({(255 + k, 0): 256 + k for k in range(limit + 1)})


ASCII = st.lists(
    st.one_of(
        st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "\x0b", "\x0c", "\x1c", "'", "'s", "'LL"]),
        st.sampled_from(["'Re", "'ve", "'d", "a", "Zz", "7", "123456", "_", ".", "!?", "-"]),
        st.characters(max_codepoint=127),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(s=ASCII)
def test_the_ascii_splits_equal_the_patterns_on_ascii_text(s: str) -> None:
    for pattern in (GPT4_PATTERN, GPT2_PATTERN):
        assert patterns._ASCII_SPLITS[pattern](s) == regex.findall(pattern, s)


def test_the_ascii_splits_agree_on_every_short_ascii_string() -> None:
    chars = "a7' \n\r\t\x0b.sSl"  # each class the patterns tell apart, and contractions
    texts = ["".join(t) for n in range(1, 5) for t in itertools.product(chars, repeat=n)]
    for pattern in (GPT4_PATTERN, GPT2_PATTERN):
        split = regex.compile(pattern).findall
        assert all(patterns._ASCII_SPLITS[pattern](t) == split(t) for t in texts)


def test_regex_whitespace_is_python_whitespace() -> None:
    # The fast path checks piece edges with str.isspace; it is safe because every
    # character that the patterns' \s matches is also str.isspace.
    s = "".join(map(chr, range(sys.maxunicode + 1)))
    assert all(c.isspace() for c in regex.findall(r"\s", s))


def test_fast_path_with_tiny_caches(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(bpe, "_CACHE_LIMIT", 50)
    monkeypatch.setattr(bpe, "_LONG_PIECE", 3)
    monkeypatch.setattr(bpe, "_LONG_CHUNK", 2)
    t = Tokenizer.train(text[:5000], 300)
    sample = text[5000:15000]
    ids = t.encode(sample)
    assert t.decode(ids) == sample
    assert ids == t.encode(sample) == Tokenizer(t.merges)._encode_split(sample)


# -- training -----------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", "none"])
def test_each_merge_is_a_most_frequent_pair(text: str, pattern: str) -> None:
    small = text[:3000] if pattern == "none" else text[:12_000]
    fast = Tokenizer.train(small, 256 + 60, pattern=PATTERNS[pattern])
    assert list(fast.merges) == slow_train(small, 60, PATTERNS[pattern])


def test_ties_and_overlaps_follow_the_documented_rule() -> None:
    for s in ["aaaa aaaa aaa baaaab abababab", "zzyy yyzz zy yz", "ab ba ab ba ba ab xx"]:
        with pytest.warns(UserWarning, match="no pair of tokens occurs twice"):
            fast = Tokenizer.train(s, 256 + 30, pattern="")
        assert list(fast.merges) == slow_train(s, 30, "")


def test_classic_aaabdaaabac() -> None:
    with pytest.warns(UserWarning, match="after 3 of 4 merges"):
        t = Tokenizer.train("aaabdaaabac", 260, pattern="")
    a, b, c, d = map(ord, "abcd")
    # "aa" (4 overlapping), then "ab" (ties with "Za" at 2; the smaller pair wins), "ZY"
    assert t.merges == {(a, a): 256, (a, b): 257, (256, 257): 258}
    assert t.encode("aaabdaaabac") == [258, d, 258, a, c]
    assert t.vocab[258] == b"aaab"


def test_training_is_deterministic(text: str, tmp_path: Path) -> None:
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    Tokenizer.train(text[:40_000], 500).save(first)
    Tokenizer.train(text[:40_000], 500).save(second)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("pattern", [GPT4_PATTERN, GPT2_PATTERN])
def test_merges_never_cross_chunks(text: str, pattern: str) -> None:
    t = Tokenizer.train(text[:20_000], 400, pattern=pattern)
    split = regex.compile(pattern)
    for token in t.vocab.values():
        assert len(split.findall(token.decode("utf-8", "replace"))) == 1, token


def test_training_with_special_tokens(text: str) -> None:
    corpus = (EOT + text[:4000]) * 3
    t = Tokenizer.train(corpus, 400, special_tokens=[EOT, "<|pad|>"])
    assert t.special_tokens == {EOT: 398, "<|pad|>": 399}
    assert t.vocab_size == 400 and len(t.merges) == 142
    assert all(b"<|" not in v for v in t.vocab.values())  # never learned from the cut-out text
    ids = t.encode(corpus, allowed_special="all")
    assert ids.count(398) == 3 and t.decode(ids) == corpus
    fixed = Tokenizer.train(text[:4000], 400, special_tokens={EOT: 1000})
    assert fixed.special_tokens == {EOT: 1000} and fixed.vocab_size == 1001


def test_training_stops_early_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="training stopped after 2 of 44 merges"):
        t = Tokenizer.train("abab abab", 300)
    assert len(t.merges) == 2 and t.vocab_size == 258
    with pytest.warns(UserWarning, match="after 0 of"):
        assert Tokenizer.train("", 300).merges == {}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_size": 255}, "vocab_size must be an integer >= 256"),
        ({"vocab_size": 300.0}, "vocab_size must be an integer"),
        ({"vocab_size": 256, "special_tokens": [EOT]}, ">= 257"),
        ({"vocab_size": 300, "special_tokens": {EOT: 290}}, "inside the merge ids"),
        ({"vocab_size": 300, "special_tokens": [""]}, "non-empty string"),
        ({"vocab_size": 300, "pattern": "(unclosed"}, "not a valid regex"),
        ({"vocab_size": 300, "pattern": "[a-z]+"}, "skipped some characters"),
    ],
)
def test_training_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(TokenizerError, match=regex.escape(message)):
        Tokenizer.train("some text, some text 123", **kwargs)


# -- merges by rank -----------------------------------------------------------------------


def test_merges_apply_by_rank_not_left_to_right() -> None:
    a, b, c = map(ord, "abc")
    t = Tokenizer({(b, c): 256, (a, b): 257, (a, 256): 258}, pattern="")
    # rank 0 (b, c) goes first although (a, b) comes first in the text
    assert t.encode("abc") == [258]
    assert t.encode("ab") == [257]
    assert t.encode("abab") == [257, 257]
    assert t.encode("abcab") == [258, 257]
    wrong_order = Tokenizer({(a, b): 256, (b, c): 257, (a, 257): 258}, pattern="")
    assert wrong_order.encode("abc") == [256, c]


def test_long_chunks_use_the_same_rules(text: str) -> None:
    t = Tokenizer.train(text[:3000], 320, pattern="")
    long_text = text[3000:60_000]
    ids = t.encode(long_text)
    assert t.decode(ids) == long_text
    assert ids == Tokenizer(t.merges, pattern=r"(?s:.+)").encode(long_text)


# -- special tokens -----------------------------------------------------------------------


def test_special_tokens_are_text_unless_allowed(tok4: Tokenizer) -> None:
    eot = tok4.special_tokens[EOT]
    s = f"hello{EOT} world"
    assert eot not in tok4.encode(s)
    assert eot not in tok4.encode(s, allowed_special=set())
    assert tok4.encode(s) == tok4.encode_ordinary(s)
    allowed = tok4.encode(s, allowed_special="all")
    assert allowed == tok4.encode("hello") + [eot] + tok4.encode(" world")
    assert tok4.encode(s, allowed_special={EOT}) == allowed
    assert tok4.decode(allowed) == s
    with pytest.raises(TokenizerError, match="not a registered special token"):
        tok4.encode(s, allowed_special={"<|nope|>"})
    with pytest.raises(TokenizerError, match='must be "all", "none" or a set'):
        tok4.encode(s, allowed_special=EOT)


def test_only_the_allowed_special_tokens_are_split_out(tok4: Tokenizer) -> None:
    t = Tokenizer.from_json(tok4.to_json())
    t.register_special_tokens(["<|a|>", "<|a|><|b|>"])
    s = "x<|a|><|b|> y<|a|>z" + EOT
    ids = t.encode(s, allowed_special={"<|a|>"})
    assert ids == [*t.encode("x"), 600, *t.encode("<|b|> y"), 600, *t.encode("z" + EOT)]
    assert t.encode(s, "all")[1] == 601  # the longest special token wins
    assert t.decode(t.encode(s, "all")) == s


def test_register_special_tokens_checks_them(tok4: Tokenizer) -> None:
    t = Tokenizer.from_json(tok4.to_json())
    t.register_special_tokens({"<|x|>": 700})
    assert t.vocab_size == 701
    t.register_special_tokens(["<|y|>"])
    assert t.special_tokens["<|y|>"] == 701
    for bad, message in [
        ({"<|z|>": 598}, "above every merge"),
        ({"<|z|>": 700}, "have the same id 700"),
        ({"<|z|>": True}, "must be integers"),
        ({"<|x|>": 800}, "already registered"),
        ({5: 800}, "non-empty string"),
        ("<|z|>", "dict or a list"),
    ]:
        with pytest.raises(TokenizerError, match=regex.escape(message)):
            t.register_special_tokens(bad)  # type: ignore[arg-type]
    assert t.decode([700, 701]) == "<|x|><|y|>"


# -- save format and validation -----------------------------------------------------------


def test_the_file_is_readable_json(tok4: Tokenizer) -> None:
    text = tok4.to_json()
    data = json.loads(text)
    assert data["format"] == "llm-tiny-bpe" and data["version"] == 1
    assert data["pattern"] == GPT4_PATTERN and data["special_tokens"] == {EOT: 599}
    assert data["merges"][0] == list(next(iter(tok4.merges)))
    assert len(text.splitlines()) == len(tok4.merges) + 8  # one merge per line


def test_fingerprint_tells_tokenizers_apart(tok4: Tokenizer, text: str) -> None:
    other = Tokenizer.train(text[:30_000], 599, special_tokens=[EOT])
    assert len(tok4.fingerprint()) == 64
    assert tok4.fingerprint() != other.fingerprint()
    assert tok4 != other and tok4 != "tokenizer"
    pretty = json.dumps(json.loads(tok4.to_json()), indent=1)  # another layout, same content
    assert Tokenizer.from_json(pretty).fingerprint() == tok4.fingerprint()
    a, b = Tokenizer(special_tokens={"<|a|>": 300, "<|b|>": 256}), Tokenizer()
    b.register_special_tokens({"<|b|>": 256})
    b.register_special_tokens({"<|a|>": 300})
    assert a.to_json() == b.to_json()  # specials are written in id order


def test_patterns_can_be_named(text: str) -> None:
    for name, pattern in PATTERNS.items():
        assert Tokenizer(pattern=name).pattern == pattern
    named = Tokenizer.train(text[:5000], 300, pattern="gpt2")
    assert named == Tokenizer.train(text[:5000], 300, pattern=GPT2_PATTERN)


def test_repr_names_the_sizes(tok4: Tokenizer) -> None:
    assert repr(tok4) == "Tokenizer(vocab_size=600, merges=343, pattern=gpt4, special_tokens=1)"
    assert "pattern=custom" in repr(Tokenizer(pattern=r"\w+|\W"))


def good() -> dict:
    return {
        "format": "llm-tiny-bpe",
        "version": 1,
        "pattern": GPT4_PATTERN,
        "special_tokens": {EOT: 258},
        "merges": [[104, 105], [256, 33]],
    }


def edit(**changes: object) -> str:
    data = good()
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


MALFORMED = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    (edit(format=KeyError), "missing field 'format'"),
    (edit(version=KeyError), "missing field 'version'"),
    (edit(pattern=KeyError), "missing field 'pattern'"),
    (edit(special_tokens=KeyError), "missing field 'special_tokens'"),
    (edit(merges=KeyError), "missing field 'merges'"),
    (edit(extra=1), "unknown field 'extra'"),
    (edit(format="minbpe"), "format is 'minbpe'"),
    (edit(version=2), "unsupported version 2"),
    (edit(version="1"), "unsupported version '1'"),
    (edit(version=True), "unsupported version True"),
    (edit(pattern=5), "pattern must be a string"),
    (edit(pattern="(?P<"), "not a valid regex"),
    (edit(special_tokens=[EOT]), "special_tokens must be an object"),
    (edit(special_tokens={EOT: "258"}), "must be integers >= 258"),
    (edit(special_tokens={EOT: 257}), "must be integers >= 258"),
    (edit(special_tokens={EOT: 258, "<|pad|>": 258}), "have the same id 258"),
    (edit(special_tokens={"": 300}), "non-empty string"),
    (edit(merges={"104": 105}), "merges must be a list"),
    (edit(merges=[[104]]), "merge 0 is not a [left, right] pair"),
    (edit(merges=[[104, 105, 106]]), "merge 0 is not a [left, right] pair"),
    (edit(merges=[["h", "i"]]), "merge 0 is not a [left, right] pair"),
    (edit(merges=[[104, 1.5]]), "merge 0 is not a [left, right] pair"),
    (edit(merges=[[True, 105]]), "merge 0 is not a [left, right] pair"),
    (edit(merges=[[104, 105], [257, 33]]), "merge 1 refers to id 257, which is not defined"),
    (edit(merges=[[256, 105]]), "merge 0 refers to id 256"),
    (edit(merges=[[-1, 105]]), "merge 0 refers to id -1"),
    (edit(merges=[[104, 105], [104, 105]]), "merge 1 repeats the pair [104, 105] of merge 0"),
    ('{"format": "llm-tiny-bpe", "format": "x"}', "duplicate key 'format'"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize("content, message", MALFORMED)
def test_malformed_files_raise_a_named_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match=regex.escape(message)) as err:
        Tokenizer.load(path)
    assert str(err.value).startswith(str(path))


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(edit(), encoding="utf-8")
    t = Tokenizer.load(path)
    # "hi" merges, but "hi" + "!" never does: the pattern puts "!" in a chunk of its own
    assert t.encode("hi! hi!" + EOT, "all") == [256, 33, 32, 256, 33, 258]
    assert t.decode([257]) == "hi!"


def test_a_failed_save_leaves_nothing_behind(tok4: Tokenizer, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        tok4.save(tmp_path / "taken")  # a folder cannot be replaced by a file
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    with pytest.raises(FileNotFoundError, match="no such directory"):
        tok4.save(tmp_path / "missing" / "t.json")


def test_non_utf8_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(edit().encode("utf-8") + b"\xff")
    with pytest.raises(TokenizerError, match="not a UTF-8 text file"):
        Tokenizer.load(path)
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "merges, message",
    [
        ({(104, 105): 257}, "merge 0 must create id 256, not 257"),
        ({(104, 105): "256"}, "merge 0 must create id 256"),
        ({(104,): 256}, "merge 0 is not a (left, right) pair"),
        ({"hi": 256}, "merge 0 is not a (left, right) pair"),
    ],
)
def test_constructor_checks_the_merges(merges: dict, message: str) -> None:
    with pytest.raises(TokenizerError, match=regex.escape(message)):
        Tokenizer(merges)


def test_the_error_is_a_value_error() -> None:
    assert issubclass(TokenizerError, ValueError)
    with pytest.raises(TokenizerError, match="must be a str, not bytes"):
        Tokenizer.from_json(b"{}")  # type: ignore[arg-type]


# -- tiktoken agrees, id for id -----------------------------------------------------------


def test_same_ids_as_tiktoken_with_our_merges(text: str) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    for pattern in (GPT4_PATTERN, GPT2_PATTERN):
        t = Tokenizer.train(text[:60_000], 700, pattern=pattern)
        ranks = {t.vocab[i]: i for i in range(256 + len(t.merges))}
        assert len(ranks) == 256 + len(t.merges)  # no two ids share their bytes
        enc = tiktoken.Encoding("ours", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        samples = [text[60_000:], *WHITESPACE, *UNICODE[:-2]]
        for s in samples:
            assert t.encode(s) == enc.encode_ordinary(s)
