"""GPT-2's tokenizer: GPT-2's own ids, equal to tiktoken's `gpt2` encoding on any text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tok import Tokenizer
from tok.gpt2 import byte_chars, is_gpt2_folder, load_gpt2

ROOT = Path(__file__).resolve().parents[2]
GPT2 = ROOT / "tests" / "data" / "gpt2"  # OpenAI's files, with provenance in its README
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return load_gpt2(GPT2)


@pytest.fixture(scope="module")
def tiktoken_gpt2():  # type: ignore[no-untyped-def]
    """tiktoken's `gpt2` encoding, built from the same files (its own hashes check they are
    OpenAI's) with its own split pattern: what tiktoken.get_encoding("gpt2") downloads."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext import openai_public

    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(GPT2 / "merges.txt"),
        encoder_json_file=str(GPT2 / "vocab.json"),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    )
    return tiktoken.Encoding(
        "gpt2",
        pat_str=openai_public.r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={EOT: 50256},
        explicit_n_vocab=50257,
    )


def test_the_ids_are_gpt2s_own(gpt2: Tokenizer) -> None:
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(EOT, allowed_special="all") == [50256]
    assert gpt2.special_tokens == {EOT: 50256} and gpt2.vocab_size == 50257
    assert len(gpt2.merges) == 50_000 and gpt2.vocab[0] == b"!" and gpt2.vocab[50255] == b" gazed"
    assert sorted(gpt2.byte_ids) == list(range(256)) and gpt2.byte_ids[ord("!")] == 0
    assert gpt2.decode([15496, 995, 50256]) == "Hello world" + EOT


# every class the split pattern tells apart, contractions, and text far from ASCII
PIECES = st.sampled_from(
    [" ", "  ", "\n", "\n\n", "\r\n", "\t", " \n ", "'s", "'ll", "'VE", "'", "a", "Zz", "7", "1234"]
    + [
        "é",
        "ß",
        "中文",
        "🙂",
        "\u00a0",
        "\u3000",
        "\x00",
        "!?",
        " .",
        "<|",
        EOT,
        "\ud800",
        "\U0010ffff",
    ]
)
TEXTS = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=30).map("".join)


@settings(max_examples=600, deadline=None)
@given(s=TEXTS)
def test_equal_to_tiktoken_on_any_text(gpt2: Tokenizer, tiktoken_gpt2, s: str) -> None:  # type: ignore[no-untyped-def]
    assert gpt2.encode(s) == tiktoken_gpt2.encode_ordinary(s)
    assert gpt2.encode(s, allowed_special="all") == tiktoken_gpt2.encode(s, allowed_special="all")
    clean = s.encode("utf-16", "surrogatepass").decode(
        "utf-16", "replace"
    )  # lone surrogates: U+FFFD
    assert gpt2.decode(gpt2.encode(s)) == clean


@pytest.mark.parametrize("name", ["tiny.txt", "tinyshakespeare.txt"])
def test_equal_to_tiktoken_on_real_text(gpt2: Tokenizer, tiktoken_gpt2, name: str) -> None:  # type: ignore[no-untyped-def]
    text = (ROOT / "data" / name).read_text(encoding="utf-8")
    ids = gpt2.encode(text)
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.encode(text) == ids  # warm caches, same ids
    assert Tokenizer.load(GPT2)._encode_split(text) == ids  # the plain chunk path agrees
    assert gpt2.decode(ids) == text


def test_every_token_encodes_to_itself(gpt2: Tokenizer, tiktoken_gpt2) -> None:  # type: ignore[no-untyped-def]
    # the text of every ordinary token (that is valid UTF-8), encoded on its own
    for i, b in gpt2.vocab.items():
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        assert gpt2.encode(s) == tiktoken_gpt2.encode_ordinary(s), (i, s)


def test_the_file_round_trip_keeps_gpt2s_ids(gpt2: Tokenizer, tmp_path: Path) -> None:
    gpt2.save(tmp_path / "gpt2.json")
    back = Tokenizer.load(tmp_path / "gpt2.json")
    assert back == gpt2 and back.byte_ids == gpt2.byte_ids
    assert back.encode("Hello world") == [15496, 995]
    assert '"version": 2' in gpt2.to_json() and '"byte_ids": [188, 189,' in gpt2.to_json()


def test_a_folder_loads_everywhere(gpt2: Tokenizer, tmp_path: Path) -> None:
    assert is_gpt2_folder(GPT2) and not is_gpt2_folder(tmp_path)
    assert Tokenizer.load(GPT2) == gpt2
    assert load_gpt2(GPT2 / "vocab.json") == gpt2
    assert load_gpt2([GPT2 / "vocab.json", GPT2 / "merges.txt"]) == gpt2
    copy = tmp_path / "gpt2"
    shutil.copytree(GPT2, copy)
    assert Tokenizer.load(str(copy)) == gpt2


def hf_tokenizer_json(folder: Path) -> Path:
    """GPT-2's tokenizer.json as Hugging Face writes it, from the vocab and merges files."""
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer(
        tokenizers.models.BPE.from_file(str(GPT2 / "vocab.json"), str(GPT2 / "merges.txt"))
    )
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = tokenizers.decoders.ByteLevel()
    hf.add_special_tokens([EOT])
    path = folder / "tokenizer.json"
    hf.save(str(path))
    return path


def test_hf_tokenizer_json_gives_the_same_tokenizer(gpt2: Tokenizer, tmp_path: Path) -> None:
    path = hf_tokenizer_json(tmp_path)
    assert Tokenizer.load(path) == gpt2 == load_gpt2(path)  # the file
    assert load_gpt2(tmp_path) == gpt2  # a folder with only tokenizer.json
    shutil.copy(GPT2 / "vocab.json", tmp_path)
    shutil.copy(GPT2 / "merges.txt", tmp_path)
    assert load_gpt2(tmp_path) == gpt2  # both


def test_the_byte_table_is_gpt2s(gpt2: Tokenizer) -> None:
    chars = byte_chars()
    assert len(set(chars)) == 256 and chars[ord(" ")] == "Ġ" and chars[ord("\n")] == "Ċ"
    assert chars[ord("A")] == "A" and chars[0] == "Ā" and chars[0xAD] == "Ń"
