"""The file format: canonical bytes, fingerprints, and a named error for every malformed file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex

from tok import GPT4_PATTERN, Tokenizer, TokenizerError

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"
EOT = "<|endoftext|>"

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
    (edit(version=3), "unsupported version 3"),
    (edit(version=2), "missing field 'byte_ids'"),
    (edit(version=2, byte_ids=[0] * 256), "byte_ids must list the ids 0..255"),
    (edit(version=2, byte_ids=[False, *range(1, 256)]), "byte_ids must list the ids 0..255"),
    (edit(byte_ids=list(range(256))), "unknown field 'byte_ids'"),
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
