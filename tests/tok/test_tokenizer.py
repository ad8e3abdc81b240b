"""The Tokenizer class: round trips, training, merge order, special tokens, validation."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tok import GPT2_PATTERN, GPT4_PATTERN, PATTERNS, Tokenizer, TokenizerError

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"
EOT = "<|endoftext|>"


@pytest.fixture(scope="module", params=["gpt4", "gpt2", "none"])
def tok(request: pytest.FixtureRequest, text: str) -> Tokenizer:
    """A 400-id tokenizer per pattern, trained on a slice of data/tiny.txt."""
    return Tokenizer.train(text[:20_000], 400, pattern=PATTERNS[request.param])


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


# -- validation ---------------------------------------------------------------------------


def test_patterns_can_be_named(text: str) -> None:
    for name, pattern in PATTERNS.items():
        assert Tokenizer(pattern=name).pattern == pattern
    named = Tokenizer.train(text[:5000], 300, pattern="gpt2")
    assert named == Tokenizer.train(text[:5000], 300, pattern=GPT2_PATTERN)


def test_repr_names_the_sizes(tok4: Tokenizer) -> None:
    assert repr(tok4) == "Tokenizer(vocab_size=600, merges=343, pattern=gpt4, special_tokens=1)"
    assert "pattern=custom" in repr(Tokenizer(pattern=r"\w+|\W"))


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
