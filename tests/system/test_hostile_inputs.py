"""Untrusted files and hostile text through every command that reads them: a one-line error and exit
2, or a clean run; never a traceback, never code run from a file, never a hang."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_tiny import checkpoint as ck
from llm_tiny.data import MAX_VOCAB
from llm_tiny.eval import main as eval_main
from llm_tiny.sample import main as sample_main
from llm_tiny.train import main as train_main
from tok.bpe import FORMAT, GPT4_PATTERN, Tokenizer, TokenizerError
from tok.cli import main as bpe_main

ROOT = Path(__file__).resolve().parents[2]
Args = Callable[..., list[str]]
TIMEOUT = 300  # s: a hang guard for subprocesses, far above a healthy run


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def good_ckpt(tiny_args: Args, tmp_path: Path) -> Path:
    """A real checkpoint of a 4-step run."""
    assert train_main(tiny_args("train.max_steps=4", "train.eval_interval=4", run="good")) == 0
    return tmp_path / "good" / "ckpt_last.pt"


class _Evil:
    """Unpickling this creates a marker file (the code a hostile checkpoint would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _hostile_tokenizer_state(state: dict[str, Any]) -> None:
    """A self-consistent checkpoint whose tokenizer has a special id near 2**31: building its model
    would ask for an embedding of 2**31 rows (hundreds of GB)."""
    tok = Tokenizer.from_json(state["tokenizer"])
    huge = Tokenizer(tok.merges, tok.pattern, {"<|x|>": 2**31 - 1})
    state["tokenizer"], state["tokenizer_fingerprint"] = huge.to_json(), huge.fingerprint()
    state["model_config"]["vocab_size"] = huge.vocab_size


# name -> how to turn a good checkpoint (its bytes, its dict, a marker path that code run from the
# file would create) into a hostile file's bytes
def _saved(change: Callable[..., Any]) -> Callable[[bytes, dict, Path], bytes]:
    def make(data: bytes, state: dict[str, Any], marker: Path) -> bytes:
        out = change(state, marker) if change.__code__.co_argcount == 2 else change(state)
        buf = io.BytesIO()
        torch.save(state if out is None else out, buf)
        return buf.getvalue()

    return make


CKPT_CASES: dict[str, Callable[[bytes, dict, Path], bytes]] = {
    "empty": lambda d, s, f: b"",
    "truncated_half": lambda d, s, f: d[: len(d) // 2],
    "truncated_tail": lambda d, s, f: d[:-7],
    "one_byte": lambda d, s, f: d[:1],
    "random_bytes": lambda d, s, f: os.urandom(len(d)),
    "zip_of_nothing": lambda d, s, f: b"PK\x05\x06" + b"\0" * 18,
    "a_list": _saved(lambda s: [1, 2, 3]),
    "missing_keys": _saved(lambda s: {k: v for k, v in s.items() if k != "model"}),
    "model_not_tensors": _saved(lambda s: s.update(model={"w": "x"})),
    "weights_of_another_shape": _saved(
        lambda s: s["model"].update({k: torch.zeros(3) for k in list(s["model"])[:1]})
    ),
    "nan_weights": _saved(
        lambda s: s["model"].update(
            {k: torch.full_like(v, float("nan")) for k, v in list(s["model"].items())[:1]}
        )
    ),
    "negative_step": _saved(lambda s: s.update(step=-5)),
    "huge_model_config": _saved(lambda s: s["model_config"].update(n_embd=2**16, n_layer=64)),
    "huge_tokenizer_id": _saved(_hostile_tokenizer_state),
    "bad_tokenizer_json": _saved(lambda s: s.update(tokenizer="[1, 2", tokenizer_fingerprint="0")),
    "pickle_runs_code": _saved(lambda s, m: s["config"].update(evil=_Evil(m))),
    "raw_pickle_runs_code": lambda d, s, m: pickle.dumps({"x": _Evil(m)}),
}


def _readers(path: Path, tiny_args: Args, tmp_path: Path) -> dict[str, Callable[[], int]]:
    """Each command that reads a checkpoint, pointed at `path`."""
    run = tmp_path / "resume_run"

    def resume() -> int:
        run.mkdir(exist_ok=True)
        shutil.copy(path, run / "ckpt_last.pt")
        return train_main(tiny_args("train.resume=true", run="resume_run"))

    return {
        "train_resume": resume,
        "eval": lambda: eval_main(["--ckpt", str(path)]),
        "sample": lambda: sample_main(["--ckpt", str(path), "--steps", "3"]),
    }


@pytest.mark.parametrize("case", sorted(CKPT_CASES))
def test_hostile_checkpoint_is_refused_by_every_reader(
    case: str,
    good_ckpt: Path,
    tiny_args: Args,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    marker = tmp_path / "pwned"
    state = ck.load_checkpoint(good_ckpt)
    data = CKPT_CASES[case](good_ckpt.read_bytes(), state, marker)
    bad = tmp_path / f"{case}.pt"
    bad.write_bytes(data)
    capsys.readouterr()
    for reader, run in _readers(bad, tiny_args, tmp_path).items():
        assert run() == 2, reader
        err = one_error_line(capsys.readouterr().err)
        assert bad.name in err or "ckpt_last.pt" in err or "checkpoint's" in err, (reader, err)
        assert not marker.exists(), f"{reader} ran code from the checkpoint"


def test_a_hostile_time_budget_plan_is_refused_on_resume(
    good_ckpt: Path, tiny_args: Args, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by this battery: a non-integer budget_plan was converted outside the checks (a
    traceback), but only when the resumed run had a time budget."""
    state = ck.load_checkpoint(good_ckpt)
    state["train_state"]["budget_plan"] = "soon"
    torch.save(state, good_ckpt)
    capsys.readouterr()
    assert train_main(tiny_args("train.resume=true", "train.time_budget_s=5", run="good")) == 2
    assert "cannot restore training state" in one_error_line(capsys.readouterr().err)


def test_a_hostile_model_config_is_refused_before_any_allocation(good_ckpt: Path) -> None:
    """Found by this battery: eval/sample built the model a checkpoint's config asked for before
    comparing its weights, so a small file could ask for terabytes (a traceback, or the OOM killer).
    """
    state = ck.load_checkpoint(good_ckpt)
    state["model_config"].update(n_embd=2**20, n_layer=48)  # ~2.5 PB of fp32
    with pytest.raises(ck.UserError, match=r"does not fit the model: .*config \("):
        ck.build_model(state, "hostile.pt")


# ---- tokenizer files ---------------------------------------------------------------------------

ids = st.one_of(
    st.integers(-5, 300),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31 - 1, 2**31, 2**63, -(2**63)]),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.none(),
)
merge_item = st.one_of(
    st.lists(st.integers(0, 300), min_size=2, max_size=2),  # valid, forward refs, self refs
    st.lists(ids, min_size=0, max_size=3),
    ids,
)
patterns = st.one_of(
    st.sampled_from([GPT4_PATTERN, "", "gpt2", "none", "(", "[", "(?P<", r"\p{Zz}", "a{99999999}"]),
    st.text(max_size=6),
    ids,
)
tokenizer_objects = st.fixed_dictionaries(
    {
        "format": st.one_of(st.just(FORMAT), st.text(max_size=5), ids),
        "version": st.one_of(st.just(1), ids),
        "pattern": patterns,
        "special_tokens": st.one_of(
            st.dictionaries(st.text(max_size=4), ids, max_size=3),
            st.lists(st.text(max_size=3), max_size=2),
            ids,
        ),
        "merges": st.one_of(st.lists(merge_item, max_size=6), ids),
    }
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)
tokenizer_texts = st.one_of(
    tokenizer_objects.map(json.dumps),
    tokenizer_objects.map(lambda d: {k: v for k, v in d.items() if k != "merges"}).map(json.dumps),
    tokenizer_objects.map(lambda d: {**d, "extra": 1}).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.just('{"merges": [[' + "9" * 5000 + ", 1]]}"),  # past Python's int-conversion limit
    st.just("[" * 100_000),  # nested past the recursion limit
)


@settings(max_examples=300, deadline=None)
@given(text=tokenizer_texts)
def test_any_tokenizer_json_loads_cleanly_or_raises_tokenizer_error(text: str) -> None:
    try:
        tok = Tokenizer.from_json(text)
    except TokenizerError:
        return  # refused with its own error type: what every reader turns into one line
    s = "hello world, héllo\n\x00 "
    try:
        ids = tok.encode(s)
    except TokenizerError:  # e.g. a pattern that skips characters: refused, not mis-encoded
        return
    assert tok.decode(ids) == s  # what loads and encodes, round-trips


def _bpe(argv: list[str]) -> tuple[int, str]:
    """tok.bpe's main in-process: exit code and stderr."""
    out, err = io.TextIOWrapper(io.BytesIO()), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = bpe_main(argv)
    return code, err.getvalue()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=tokenizer_texts, raw=st.booleans())
def test_tok_bpe_encode_and_decode_never_trace_on_a_hostile_file(
    tmp_path: Path, text: str, raw: bool
) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if raw else text.encode())
    for argv in (
        ["encode", "--model", str(path), "hi there"],
        ["decode", "--model", str(path), "104"],
    ):
        code, err = _bpe(argv)
        assert code in (0, 2), err
        if code == 2:
            assert str(path) in one_error_line(err)


def _spec(special: dict[str, int] | None = None, merges: list | None = None, **kw: object) -> str:
    obj: dict[str, object] = {"format": FORMAT, "version": 1, "pattern": GPT4_PATTERN}
    obj.update(special_tokens=special or {}, merges=merges if merges is not None else [[104, 105]])
    obj.update(kw)
    return json.dumps(obj)


TOKENIZER_FILES: dict[str, bytes] = {
    "empty": b"",
    "truncated": _spec().encode()[:-9],
    "random_bytes": bytes(range(256)) * 3,
    "not_utf8": b'{"format": "\xff"}',
    "wrong_structure": b'{"merges": {"a": 1}}',
    "negative_id": _spec(merges=[[104, -1]]).encode(),
    "huge_id": _spec(merges=[[10**30, 1]]).encode(),
    "giant_literal": _spec(merges=[]).encode().replace(b"[]", b"[[" + b"9" * 5000 + b", 1]]"),
    "cycle": _spec(merges=[[104, 105], [257, 104]]).encode(),  # 257 refers to itself
    "forward_ref": _spec(merges=[[258, 104], [104, 105]]).encode(),
    "negative_special": _spec({"<s>": -4}).encode(),
    "special_past_2_31": _spec({"<s>": 2**31}).encode(),
    "duplicate_key": b'{"format": 1, "format": 2}',
    "capturing_group_pattern": _spec(pattern="(h)(i)|\\s+|.").encode(),  # findall gave tuples
    "regex_nested_too_deep": _spec(pattern="(?:" * 5000 + ")" * 5000).encode(),
    "deep_nesting": b"[" * 100_000,
}


@pytest.mark.parametrize("case", sorted(TOKENIZER_FILES))
def test_hostile_tokenizer_file_through_every_reader(
    case: str, tiny_args: Args, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{case}.json"
    path.write_bytes(TOKENIZER_FILES[case])
    for argv in (["encode", "--model", str(path), "hi"], ["decode", "--model", str(path), "104"]):
        code, err = _bpe(argv)
        assert code == 2 and str(path) in one_error_line(err), (argv, err)
    capsys.readouterr()
    assert train_main(tiny_args(f"data.tokenizer={path}")) == 2
    assert str(path) in one_error_line(capsys.readouterr().err)


def test_a_tokenizer_with_a_giant_special_id_is_refused_for_training(
    tiny_args: Args, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by this battery: a special id of 2**31 - 1 is a valid tokenizer (tok.bpe uses it) but
    training asked for a 2**31-row embedding and died with an allocator traceback."""
    path = tmp_path / "giant.json"
    path.write_text(_spec({"<s>": 2**31 - 1}))
    assert _bpe(["encode", "--model", str(path), "hi"])[0] == 0
    capsys.readouterr()
    assert train_main(tiny_args(f"data.tokenizer={path}")) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(path) in err and str(2**31 - 1) in err and str(MAX_VOCAB) in err


# ---- a checkpoint with another tokenizer or data cache -----------------------------------------


def test_token_cache_of_another_tokenizer_is_refused_naming_both(
    good_ckpt: Path, tiny_args: Args, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache file whose record names another tokenizer (copied or renamed in) used to be silently
    overwritten; now the run stops and names both tokenizers."""
    ours = ck.tokenizer_of(ck.load_checkpoint(good_ckpt)).fingerprint()
    metas = sorted((tmp_path / "cache").glob("*.json"))
    assert metas
    for m in metas:
        meta = json.loads(m.read_text())
        meta["tokenizer"] = "f" * 64
        m.write_text(json.dumps(meta))
    capsys.readouterr()
    assert train_main(tiny_args("train.resume=true", "train.max_steps=6", run="good")) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "f" * 12 in err and ours[:12] in err and "token cache" in err
    assert eval_main(["--ckpt", str(good_ckpt), "--cache_dir", str(tmp_path / "cache")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "f" * 12 in err and ours[:12] in err


# ---- hostile text ------------------------------------------------------------------------------

TEXT_DRIVER = r"""
import contextlib, io, json, sys
from llm_tiny.sample import main as sample
from llm_tiny.train import main as train
args, cases = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name, text, extra in cases:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        run = f"{args['tmp']}/run_{name}"
        data = f"data.path={args['tmp']}/{text}.txt"
        code = train([*args["train"], data, f"train.out_dir={run}", *extra])
        sample_code = None
        if code == 0:
            sample_code = sample(["--ckpt", f"{run}/ckpt_last.pt", "--steps", "20", "--prompt", ""])
    print(json.dumps({"case": name, "train": code, "sample": sample_code, "err": err.getvalue(),
                      "out": out.getvalue()}), flush=True)
"""

SHIPPED = (ROOT / "data" / "tiny.txt").read_bytes()[:20_000]
TEXTS: dict[str, bytes] = {
    "empty": b"",
    "whitespace_only": b" \t\n\r\n  " * 800,
    "one_byte_repeated": b"e" * 20_000,
    "bad_utf8_start": b"\xff" + SHIPPED,
    "bad_utf8_middle": SHIPPED[:10_000] + b"\xc3\x28" + SHIPPED[10_000:],
    "bad_utf8_end": SHIPPED + b"\xe2\x82",
    "nul_byte": SHIPPED[:10_000] + b"\x00" + SHIPPED[10_000:],
    "nul_bytes_only": b"\x00" * 5_000,
}
SHARED_TOKENIZER = ("whitespace_only", "one_byte_repeated", "nul_bytes_only")
EXPECTED_ERRORS = {
    "empty": "is empty",
    "bad_utf8_start": "byte 0xff at offset 0",
    "bad_utf8_middle": "byte 0xc3 at offset 10000",
    "bad_utf8_end": f"byte 0xe2 at offset {len(SHIPPED)}",
}


@pytest.mark.slow
def test_hostile_text_trains_and_samples_or_fails_clearly(tiny_args: Args, tmp_path: Path) -> None:
    """Each text trains its own tokenizer (so the tokenizer sees the hostile text too); the texts a
    tokenizer of their own squeezes below one window also train with the shared tokenizer."""
    for name, data in TEXTS.items():
        (tmp_path / f"{name}.txt").write_bytes(data)
    all_args = tiny_args("train.max_steps=4", "train.eval_interval=2", "model.block_size=8")
    own = ("data.tokenizer=", "train.out_dir=", "data.path=")
    args = {"tmp": str(tmp_path), "train": [a for a in all_args if not a.startswith(own)]}
    shared = [a for a in all_args if a.startswith("data.tokenizer=")]
    cases = [(n, n, []) for n in TEXTS] + [(f"{n}+tok", n, shared) for n in SHARED_TOKENIZER]
    proc = subprocess.run(
        [sys.executable, "-c", TEXT_DRIVER, json.dumps(args), json.dumps(cases)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["case"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == {c[0] for c in cases}
    for name, r in results.items():
        if r["train"] == 0:
            assert r["sample"] == 0 and r["err"] == "", (name, r)
            assert len(r["out"].rsplit("\n\n", 1)[-1]) > 0
        else:
            assert r["train"] == 2, (name, r)
            line = one_error_line(r["err"])
            assert name.split("+")[0] in line, (name, line)
        if name in EXPECTED_ERRORS:
            assert r["train"] == 2 and EXPECTED_ERRORS[name] in r["err"], (name, r)
    assert results["nul_byte"]["train"] == 0  # NUL is a valid character
    for name in SHARED_TOKENIZER:
        assert results[f"{name}+tok"]["train"] == 0, results[f"{name}+tok"]
    for name in ("whitespace_only", "one_byte_repeated"):  # tokenizer warnings: one-line notes
        assert "Warning" not in results[name]["err"], results[name]


@pytest.mark.slow
def test_a_20_mb_single_line_trains_and_samples(
    tiny_args: Args, tmp_path: Path, corpus_text: str
) -> None:
    line = corpus_text.replace("\n", " ").encode()
    big = tmp_path / "big.txt"
    big.write_bytes((line * (20_000_000 // len(line) + 1))[:20_000_000])
    run = tmp_path / "run"
    cmds = [
        ["-m", "llm_tiny.train", *tiny_args(f"data.path={big}", "train.max_steps=2")],
        ["-m", "llm_tiny.sample", "--ckpt", str(run / "ckpt_last.pt"), "--steps", "10"],
        ["-m", "llm_tiny.eval", "--ckpt", str(run / "ckpt_last.pt"), "--batch_size", "256"],
    ]
    for cmd in cmds:
        proc = subprocess.run(
            [sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    assert "ppl" in proc.stdout
