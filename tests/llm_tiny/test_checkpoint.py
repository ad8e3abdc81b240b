"""Checkpoints: round trip, atomic writes under failure, and refusal of anything untrusted or wrong."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from llm_tiny import checkpoint as ck
from llm_tiny import files
from llm_tiny.config import Config
from llm_tiny.errors import UserError
from llm_tiny.files import RunLock
from llm_tiny.optim import build_optimizer
from model.gpt import GPTConfig, TinyGPT
from tok.bpe import Tokenizer


def make_state(tok: Tokenizer, step: int = 7) -> dict[str, Any]:
    """A complete checkpoint dict for a tiny model, as the trainer writes it."""
    gcfg = GPTConfig(tok.vocab_size, 16, n_layer=1, n_head=2, n_embd=32)
    torch.manual_seed(step)
    model = TinyGPT(gcfg)
    opt = build_optimizer(model, 1e-3, 0.1, (0.9, 0.95), "cpu")
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    return ck.pack(fake_run(model, opt, tok, step, 3.25, pending=[2.5]))


def fake_run(
    model: TinyGPT, opt: torch.optim.Optimizer, tok: Tokenizer, step: int, best: float, **more: Any
) -> Any:
    """The trainer's objects a checkpoint is packed from (checkpoint.Run), for a tiny model."""
    return SimpleNamespace(
        model=model,
        cfg=Config(),
        opt=opt,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        gen=torch.Generator(),
        corpus=SimpleNamespace(tokenizer=tok),
        fingerprint=tok.fingerprint(),
        step=step,
        best=best,
        total=100,
        budget=SimpleNamespace(plan=more.get("plan")),
        rows=SimpleNamespace(pending=more.get("pending", [])),
        elapsed=lambda: 1.5,
    )


def test_restore_puts_back_what_pack_saved(tok: Tokenizer) -> None:
    state = make_state(tok)
    torch.manual_seed(99)
    gcfg = GPTConfig(**state["model_config"])
    model = TinyGPT(gcfg)
    opt = build_optimizer(model, 1e-3, 0.1, (0.9, 0.95), "cpu")
    gen = torch.Generator().manual_seed(5)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    place = ck.restore(state, "ckpt.pt", model, opt, scaler, gen)
    assert place == {
        "step": 7,
        "best": 3.25,
        "budget_plan": None,
        "elapsed_s": 1.5,
        "pending": [2.5],
    }
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    assert opt.state_dict()["state"].keys() == state["optimizer"]["state"].keys()
    assert torch.equal(gen.get_state(), state["rng"]["data"])
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
    # no best loss yet travels as None and comes back as inf
    fresh = ck.pack(fake_run(model, opt, tok, 0, float("inf")))
    assert fresh["best_val_loss"] is None
    assert ck.restore(fresh, "p", model, opt, scaler, gen)["best"] == float("inf")


def test_restore_refuses_another_model_shape(tok: Tokenizer) -> None:
    state = make_state(tok)
    other = TinyGPT(GPTConfig(tok.vocab_size, 16, n_layer=2, n_head=2, n_embd=32))
    opt = build_optimizer(other, 1e-3, 0.1, (0.9, 0.95), "cpu")
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with pytest.raises(UserError, match="^ckpt.pt was trained with model .* now asks for"):
        ck.restore(state, "ckpt.pt", other, opt, scaler, torch.Generator())


@pytest.fixture
def tok(session_tokenizer: Path) -> Tokenizer:
    return Tokenizer.load(session_tokenizer)


@pytest.fixture
def saved(tmp_path: Path, tok: Tokenizer) -> tuple[Path, dict[str, Any]]:
    state = make_state(tok)
    path = tmp_path / "ckpt.pt"
    ck.save_checkpoint(state, [path])
    return path, state


def test_round_trip_rebuilds_the_same_model(saved: tuple[Path, dict[str, Any]]) -> None:
    path, state = saved
    got = ck.load_checkpoint(path)
    assert got["step"] == 7 and got["best_val_loss"] == 3.25
    assert got["train_state"] == state["train_state"]
    assert ck.tokenizer_of(got).to_json() == state["tokenizer"]
    model = ck.build_model(got)
    assert not model.training
    for k, v in state["model"].items():
        assert torch.equal(model.state_dict()[k], v)
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_save_writes_every_path_and_no_temp_files(tmp_path: Path, tok: Tokenizer) -> None:
    ck.save_checkpoint(make_state(tok), [tmp_path / "a.pt", tmp_path / "b.pt"])
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]


@pytest.mark.parametrize("fault", ["enospc", "crash"])
def test_failed_write_leaves_previous_checkpoint_intact(
    saved: tuple[Path, dict[str, Any]], tok: Tokenizer, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    path, _ = saved
    before = path.read_bytes()

    def hook(tmp: Path, final: Path) -> None:
        assert tmp.parent == final.parent and tmp.stat().st_size > 0  # half-done temp, same folder
        if fault == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise KeyboardInterrupt  # a crash (or Ctrl-C) in the middle of the write

    monkeypatch.setattr(files, "BEFORE_REPLACE", hook)
    if fault == "enospc":
        with pytest.raises(UserError, match="No space left on device.*previous file is intact"):
            ck.save_checkpoint(make_state(tok, step=99), [path])
    else:
        with pytest.raises(KeyboardInterrupt):
            ck.save_checkpoint(make_state(tok, step=99), [path])
    assert path.read_bytes() == before
    assert ck.load_checkpoint(path)["step"] == 7
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temp file is gone


def test_missing_empty_truncated_random(tmp_path: Path, saved: tuple[Path, dict[str, Any]]) -> None:
    path, _ = saved
    with pytest.raises(UserError, match="not found"):
        ck.load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        ck.load_checkpoint(tmp_path / "empty.pt")
    data = path.read_bytes()
    for n, cut in enumerate((len(data) // 2, 100, len(data) - 10)):
        p = tmp_path / f"cut{n}.pt"
        p.write_bytes(data[:cut])
        with pytest.raises(UserError, match=r"cut\d\.pt"):
            ck.load_checkpoint(p)
    rnd = tmp_path / "random.pt"
    rnd.write_bytes(os.urandom(5000))
    with pytest.raises(UserError, match="random.pt"):
        ck.load_checkpoint(rnd)


class _Evil:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["torch.save", "raw pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path: Path, tok: Tokenizer, how: str) -> None:
    marker = tmp_path / "pwned"
    state = make_state(tok)
    state["config"] = {"payload": _Evil(marker)}
    p = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(state, p)
    else:
        p.write_bytes(pickle.dumps(state))
    with pytest.raises(UserError, match=r"refused: loading it would call \S+") as e:
        ck.load_checkpoint(p)
    assert "runs code" in str(e.value)
    assert not marker.exists()


def test_a_wrong_file_is_told_from_a_hostile_one(
    tmp_path: Path, saved: tuple[Path, dict[str, Any]]
) -> None:
    """The mistakes people make with --ckpt: the run folder, its config, the corpus, a cut copy."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt_best.pt").write_bytes(saved[0].read_bytes())
    (run / "config.yaml").write_text("model:\n  n_layer: 4\n")
    (tmp_path / "corpus.txt").write_text("To be, or not to be " * 300)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(saved[0].read_bytes()[:-100])
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"step": 3}))
    cases = {
        run: f"{run} is a run folder, not a checkpoint: give --ckpt {run / 'ckpt_best.pt'}",
        run
        / "config.yaml": f"is not a checkpoint: it is a text file: give --ckpt {run}/ckpt_best.pt",
        tmp_path / "corpus.txt": "corpus.txt is not a checkpoint: it is a text file",
        cut: "cut.pt is corrupt or truncated (",
        tmp_path / "plain.pkl": "plain.pkl is not a checkpoint: a pickle, but not of torch.save's",
        run / "ckpt_last.pt": f"not found (the run holds {run / 'ckpt_best.pt'})",
        tmp_path / "never" / "ckpt_best.pt": "no run has been trained into",
    }
    for path, needle in cases.items():
        with pytest.raises(UserError) as e:
            ck.load_checkpoint(path)
        msg = str(e.value)
        assert needle in msg, msg
        assert "\n" not in msg and "pickle that runs code" not in msg
        assert msg.endswith((")", "pt", "file", "format", "/)")), msg  # never cut mid-sentence


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda s: s.pop("optimizer"), "lacks optimizer"),
        (lambda s: s.update(step="7"), "step has type str"),
        (lambda s: s.update(step=True), "step has type bool"),
        (lambda s: s.update(format="other"), "not an llm-tiny checkpoint"),
        (lambda s: s.update(version=99), "format version 99"),
        (lambda s: s.update(model={"w": [1.0]}), "not a mapping of names to tensors"),
        (lambda s: s["model_config"].update(n_head=5), "bad model config"),
        (lambda s: s["model_config"].update(flux=1), "unknown model config keys flux"),
        (lambda s: s.update(tokenizer="{}"), "bad tokenizer"),
        (lambda s: s.update(tokenizer_fingerprint="0" * 64), "fingerprint"),
    ],
)
def test_wrong_structure_is_a_user_error(
    tmp_path: Path, tok: Tokenizer, change: Any, needle: str
) -> None:
    state = make_state(tok)
    change(state)
    p = tmp_path / "bad.pt"
    torch.save(state, p)
    with pytest.raises(UserError, match=needle):
        ck.load_checkpoint(p)


def test_not_a_dict_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "list.pt"
    torch.save([1, 2, 3], p)
    with pytest.raises(UserError, match="not an llm-tiny checkpoint"):
        ck.load_checkpoint(p)


def test_vocab_mismatch_names_both_sizes(tmp_path: Path, tok: Tokenizer, corpus_text: str) -> None:
    state = make_state(tok)
    other = Tokenizer.train(corpus_text, 280)
    state["tokenizer"], state["tokenizer_fingerprint"] = other.to_json(), other.fingerprint()
    p = tmp_path / "mismatch.pt"
    torch.save(state, p)
    with pytest.raises(UserError, match="280 tokens but its model expects vocab_size 300"):
        ck.load_checkpoint(p)


def test_weights_that_do_not_fit_the_config(tmp_path: Path, tok: Tokenizer) -> None:
    state = make_state(tok)
    state["model_config"]["n_layer"] = 2
    p = tmp_path / "misfit.pt"
    torch.save(state, p)
    with pytest.raises(UserError, match="does not fit the model"):
        ck.build_model(ck.load_checkpoint(p), p)


def test_clean_state_dict_strips_wrapper_prefixes() -> None:
    sd = {"module._orig_mod.a.weight": 1, "_orig_mod.b": 2, "c": 3}
    assert ck.clean_state_dict(sd) == {"a.weight": 1, "b": 2, "c": 3}


def test_run_lock_refuses_a_second_holder_and_frees_on_release(tmp_path: Path) -> None:
    first = RunLock(tmp_path).acquire()
    with pytest.raises(UserError, match=rf"in use by pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    with RunLock(tmp_path):  # a lock file left behind by a dead run doesn't block
        assert (tmp_path / ".lock").is_file()
