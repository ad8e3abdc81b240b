"""Reading GPT-2's files: every bad file is one line naming it, and our own export reads back."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tok import Tokenizer, TokenizerError
from tok.cli import main as bpe_main
from tok.gpt2 import load_gpt2

ROOT = Path(__file__).resolve().parents[2]
GPT2 = ROOT / "tests" / "data" / "gpt2"
# the keys a tokenizer.json holds, for hostile variations of one
KEYS = ["model", "type", "vocab", "merges", "added_tokens", "pre_tokenizer", "pretokenizers"]
KEYS += [
    "special",
    "content",
    "id",
    "use_regex",
    "add_prefix_space",
    "pattern",
    "Regex",
    "behavior",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[str]]:
    """GPT-2's vocab (token -> id) and merges.txt lines, to make bad copies of."""
    vocab = json.loads((GPT2 / "vocab.json").read_text(encoding="utf-8"))
    return vocab, (GPT2 / "merges.txt").read_text(encoding="utf-8").split("\n")


def write(folder: Path, vocab: dict | str, merges: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    text = vocab if isinstance(vocab, str) else json.dumps(vocab, ensure_ascii=False)
    (folder / "vocab.json").write_text(text, encoding="utf-8")
    (folder / "merges.txt").write_text("\n".join(merges), encoding="utf-8")
    return folder


def cli(argv: list[str]) -> tuple[int, str]:
    """tok.bpe's main in-process: the exit code, and stderr (or stdout if stderr is empty)."""
    raw = io.BytesIO()
    out, err = io.TextIOWrapper(raw, encoding="utf-8"), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = bpe_main(argv)
    out.flush()
    return code, err.getvalue() or raw.getvalue().decode("utf-8")


def test_cli_encodes_and_decodes_with_a_gpt2_folder() -> None:
    assert cli(["encode", "--model", str(GPT2), "Hello world"]) == (0, "15496 995\n")
    assert cli(["decode", "--model", str(GPT2), "15496", "995", "50256"]) == (
        0,
        "Hello world<|endoftext|>",
    )


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    shutil.copy(GPT2 / "vocab.json", tmp_path)
    with pytest.raises(
        TokenizerError, match=regex.escape(f"missing file: {tmp_path / 'merges.txt'}")
    ):
        load_gpt2(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="missing file: .*empty/vocab.json"):
        load_gpt2(tmp_path / "empty")
    code, err = cli(["encode", "--model", str(tmp_path), "hi"])
    assert code == 2 and err.count("\n") == 1 and str(tmp_path / "merges.txt") in err


def bad_cases(vocab: dict, merges: list[str]) -> list[tuple[dict | str, list[str], str]]:
    # merges[0] is the "#version: 0.2" line, merges[k + 1] merge k
    swapped = [merges[0], merges[1], merges[3], merges[2], *merges[4:]]
    unknown = [*merges[:2], "Ġ zzzqqq", *merges[3:]]
    fewer = {t: i for t, i in vocab.items() if i != 300}
    more = {**vocab, "Ġzzzqqq": 40000}
    no_byte = {t: i for t, i in vocab.items() if t != "Ġ"}
    return [
        (
            vocab,
            swapped,
            "disagree: merge 1 ('h' 'e') must make id 257, the vocab gives 'he' the id 258",
        ),
        (vocab, unknown, "disagree: merge 1 uses 'zzzqqq', not in the vocab"),
        (fewer, merges, "disagree: merge 44"),
        (more, merges, "but the vocab has 50257 tokens below 50256"),
        (no_byte, merges, "disagree: byte 0x20 ('Ġ') has no id below 256"),
        ({**vocab, "\u4e2d": 5}, merges, "not in GPT-2's byte characters"),
        ('{"a": 1', merges, "not valid JSON"),
        ('["a"]', merges, "must be a JSON object of token -> integer id"),
        ({**vocab, "x": "1"}, merges, "must be a JSON object of token -> integer id"),
        (vocab, [*merges[:2], "Ġt", *merges[3:]], "merges.txt: line 3 is not two tokens"),
        ({**vocab, "Ā": 0}, merges, "disagree: two bytes have the same id"),
        ({**vocab, "Ġzzzqqq": -1}, merges, "token 'Ġzzzqqq' has the id -1"),
    ]


def test_files_that_disagree_or_do_not_parse_are_one_named_line(
    files: tuple[dict, list[str]], tmp_path: Path
) -> None:
    vocab, merges = files
    for k, (v, m, message) in enumerate(bad_cases(vocab, merges)):
        folder = write(tmp_path / str(k), v, m)
        with pytest.raises(TokenizerError, match=regex.escape(message)) as err:
            load_gpt2(folder)
        assert str(folder) in str(err.value) and "\n" not in str(err.value), message
        code, out = cli(["encode", "--model", str(folder), "hi"])
        assert code == 2 and out.startswith("error: ") and out.count("\n") == 1, out


def test_a_file_that_is_not_utf8_or_a_wrong_list_of_paths(tmp_path: Path) -> None:
    write(tmp_path, "{}", []).joinpath("vocab.json").write_bytes(b'{"\xff": 1}')
    with pytest.raises(TokenizerError, match="vocab.json: not a UTF-8 text file"):
        load_gpt2(tmp_path)
    with pytest.raises(TokenizerError, match="give a folder, a tokenizer.json, or vocab.json"):
        load_gpt2([GPT2 / "vocab.json"])


def test_bad_tokenizer_json_is_one_named_line(tmp_path: Path) -> None:
    good = {
        "model": {"type": "BPE", "vocab": {}, "merges": []},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
    }
    split = {"type": "Split", "pattern": {"Regex": " "}, "behavior": "Removed", "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
    removed = {"type": "Sequence", "pretokenizers": [split, byte_level]}
    cases = [
        ("{", "not valid JSON"),
        (json.dumps({"model": {"type": "WordPiece"}}), "not a BPE tokenizer.json"),
        (json.dumps({**good, "pre_tokenizer": {"type": "Whitespace"}}), "not a byte-level BPE"),
        (json.dumps({"model": {"type": "BPE", "vocab": [], "merges": []}}), "needs a vocab"),
        (json.dumps({**good, "model": {**good["model"], "merges": [1]}}), "merge 0 is not a pair"),
        (json.dumps(good), "byte 0x00 ('Ā') has no id below 256"),
        (
            json.dumps({**good, "pre_tokenizer": removed}),
            "a pre_tokenizer this reader does not know",
        ),
    ]
    for k, (text, message) in enumerate(cases):
        path = tmp_path / str(k) / "tokenizer.json"
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
        for where in (path, path.parent):
            with pytest.raises(TokenizerError, match=regex.escape(message)) as err:
                Tokenizer.load(where)
            assert str(path) in str(err.value)


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", "none"])
def test_our_exported_tokenizer_json_reads_back(text: str, tmp_path: Path, pattern: str) -> None:
    from llm_tiny.export import tokenizer_json

    ours = Tokenizer.train(text[:20_000], 400, pattern=pattern, special_tokens=["<|endoftext|>"])
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json(ours)), encoding="utf-8")
    back = load_gpt2(tmp_path)
    assert back == ours and back.to_json() == ours.to_json()  # same bytes: byte ids are 0..255


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.sampled_from(["", "a", "Ġ", "BPE"]),
    lambda kids: st.lists(kids, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS), kids, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.dictionaries(st.sampled_from(KEYS), JSONISH, max_size=5))
def test_any_tokenizer_json_is_read_or_refused_in_one_line(tmp_path: Path, data: dict) -> None:
    read_or_refused(tmp_path, data)


def read_or_refused(tmp_path: Path, data: dict) -> None:
    """Tokenizer.load of this JSON either works or raises one TokenizerError line naming the file."""
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        Tokenizer.load(path)
    except TokenizerError as err:
        assert str(err).startswith(str(path)) and "\n" not in str(err)


NEAR_GPT2 = st.fixed_dictionaries(
    {
        "model": st.fixed_dictionaries(
            {
                "type": st.just("BPE"),
                "vocab": st.dictionaries(st.sampled_from(["!", "Ā", "Ġ", "a", "<|x|>"]), JSONISH),
                "merges": st.lists(st.one_of(JSONISH, st.sampled_from(["Ġ a", "a a", "a"]))),
            }
        ),
        "pre_tokenizer": JSONISH | st.just({"type": "ByteLevel"}),
        "added_tokens": JSONISH,
    }
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=NEAR_GPT2)
def test_a_near_gpt2_tokenizer_json_is_read_or_refused_in_one_line(
    tmp_path: Path, data: dict
) -> None:
    read_or_refused(tmp_path, data)
