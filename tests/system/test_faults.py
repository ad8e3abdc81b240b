"""Faults injected into real training processes: SIGKILL anywhere, SIGINT/SIGTERM from outside, a
failing disk, a NaN, two runs on one folder. Nothing written may be lost or left unloadable.

The processes are forked from one server process that imported torch once (the server runs no torch
op, so forking it is safe): 30 kills then cost seconds, not a minute of imports.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
import torch
from checks import assert_same_state, rows

from llm_tiny import files, rundir
from llm_tiny import train as train_mod
from llm_tiny.checkpoint import load_checkpoint
from llm_tiny.train import Hooks, Trainer
from llm_tiny.train import main as train_main
from model.gpt import TinyGPT

ROOT = Path(__file__).resolve().parents[2]
Args = Callable[..., list[str]]
TIMEOUT = 120  # s: a hang guard only, far above any healthy run here

# The fork server: reads one JSON job per line, forks a child that runs llm_tiny.train.main with its
# output in files, prints the child's pid, then how it ended ("exit N" or "signal N"). A "warm" job
# runs in the server itself, on one thread, so that torch's lazy imports and set-up (a second in a
# fresh process) are done once, before any fork.
SERVER = r"""
import contextlib, io, json, os, sys, time
import torch
from llm_tiny import files, train
from llm_tiny.train import Hooks, main
torch.set_num_threads(1)  # no thread pool to lose across fork()
for line in sys.stdin:
    job = json.loads(line)
    if "warm" in job:
        with contextlib.redirect_stdout(io.StringIO()):
            print(main(job["warm"]), file=sys.__stdout__, flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, "out"), (2, "err")):
            f = os.open(job["log"] + "." + name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
        if job.get("slow_write"):
            def slow(tmp, final):
                if final.suffix == ".pt":
                    time.sleep(job["slow_write"])
            files.BEFORE_REPLACE = slow
        steps = os.open(job["log"] + ".steps", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        train.Hooks = lambda: Hooks(after_step=lambda t, s: os.write(steps, b"%d\n" % s))
        code = main(job["argv"])
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(("signal %d" % os.WTERMSIG(status)) if os.WIFSIGNALED(status)
          else ("exit %d" % os.WEXITSTATUS(status)), flush=True)
"""


class Server:
    """One fork server; start() launches a training child, ended() waits for its end."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the fork server died"
        return line.strip()

    def warm(self, argv: list[str]) -> None:
        """Run one training inside the server (see SERVER)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"warm": argv}) + "\n")
        self.proc.stdin.flush()
        assert self._line() == "0"

    def start(self, argv: list[str], log: Path, slow_write: float = 0.0) -> int:
        assert self.proc.stdin is not None
        job = {"argv": argv, "log": str(log), "slow_write": slow_write}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return int(self._line())

    def ended(self, pid: int) -> tuple[str, int]:
        """('exit', code) or ('signal', number) of the last child; kills it past the hang guard."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                time.sleep(0.01)
            except ProcessLookupError:
                break
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"training process {pid} hung for {TIMEOUT} s")
        kind, n = self._line().split()
        return kind, int(n)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def server() -> Iterator[Server]:
    if not hasattr(os, "fork") or not Path("/proc/self/stat").is_file():
        pytest.skip("the fork server needs fork() and /proc (Linux)")
    s = Server()
    yield s
    s.close()


def all_checkpoints_load(run: Path) -> list[int]:
    """Load every checkpoint in the folder (any failure fails the test); their steps."""
    return [load_checkpoint(p)["step"] for p in sorted(run.glob("ckpt_*.pt"))]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def wait_for(cond: Callable[[], bool], what: str, pid: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def temps(run: Path, name: str = "ckpt_") -> list[Path]:
    return list(run.glob(f".{name}*.tmp"))


# ---- SIGKILL anywhere --------------------------------------------------------------------------

KILL_RUN = (
    "train.max_steps=60",
    "train.eval_interval=4",
    "train.log_interval=2",
    "train.warmup_steps=4",
    "model.dropout=0.1",  # dropout draws from the torch RNG, which must resume too
)


def steps_done(log: Path) -> int:
    """The last step the child reported (-1 before its first)."""
    try:
        lines = log.with_suffix(".steps").read_text().split()
    except FileNotFoundError:
        return -1
    return int(lines[-1]) if lines else -1


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_unbroken_run(
    tiny_args: Args, tmp_path: Path, server: Server
) -> None:
    ref, run = tmp_path / "straight", tmp_path / "killed"
    server.warm(tiny_args("train.max_steps=4", "train.eval_interval=2", run="warm"))
    t0 = time.monotonic()
    pid = server.start(tiny_args(*KILL_RUN, run="straight"), tmp_path / "straight")
    wait_for(lambda: steps_done(tmp_path / "straight") >= 1, "the first step", pid)
    setup = time.monotonic() - t0  # config, tokenizer, token cache, model: before step 1
    assert server.ended(pid) == ("exit", 0)

    # 24 kills in the order of the run: 4 in setup, 7 inside a checkpoint write (its temp file
    # written, not yet renamed), 13 just after a random step (in a step, an evaluation, a log row, a
    # write, ...). The last target leaves 20 steps to go, so no launch can finish the run early.
    rng = random.Random(8)
    targets = rng.sample(range(1, 41), 24)
    kinds = ["setup" if i < 4 else "write" if i % 3 == 1 else "step" for i in range(24)]
    plan = sorted(zip(kinds, targets, strict=True), key=lambda p: p[1])
    resume = tiny_args(*KILL_RUN, "train.resume=true", run="killed")
    seen: dict[str, int] = {"setup": 0, "step": 0, "write": 0}
    for attempt, (kind, target) in enumerate(plan):
        log = tmp_path / f"k{attempt}"
        pid = server.start(resume, log, slow_write=0.1 if kind == "write" else 0.0)
        if kind == "setup":  # config, checkpoint, tokenizer, cache, model: before its first step
            deadline = time.monotonic() + rng.uniform(0, setup)
            while time.monotonic() < deadline and steps_done(log) < 1 and alive(pid):
                time.sleep(0.002)
        else:
            reached = partial(
                lambda lg, t, p: steps_done(lg) >= t or not alive(p), log, target, pid
            )
            wait_for(reached, "a step", pid)
            if kind == "write":
                writing = partial(lambda p: bool(temps(run)) or not alive(p), pid)
                wait_for(writing, "a write", pid)
            else:
                time.sleep(rng.uniform(0, 0.02))
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        how = server.ended(pid)
        assert how == ("signal", signal.SIGKILL), (
            kind,
            target,
            log.with_suffix(".err").read_text(),
        )
        seen[kind] += how[0] == "signal"
        all_checkpoints_load(run)  # never a checkpoint that fails to load
    assert seen == {"setup": 4, "step": 13, "write": 7}, seen

    pid = server.start(resume, tmp_path / "last")
    assert server.ended(pid) == ("exit", 0), (tmp_path / "last.err").read_text()
    assert rows(run) == rows(ref)
    assert_same_state(run / "ckpt_last.pt", ref / "ckpt_last.pt")
    assert_same_state(run / "ckpt_best.pt", ref / "ckpt_best.pt")
    assert not temps(run, "")  # a killed write's temp file is cleaned up by the next run


def alive(pid: int) -> bool:
    """Whether the child still runs (a zombie waiting for the server's waitpid counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkill_between_best_and_last_write_keeps_best_consistent(
    tiny_args: Args, tmp_path: Path
) -> None:
    """A crash after one file of a save and before the other must not leave ckpt_best older than
    what ckpt_last believes is best (found by the kill battery: best was written second)."""
    assert train_main(tiny_args(run="straight")) == 0
    code = (
        "import os, signal, sys\n"
        "from llm_tiny import files\n"
        "from llm_tiny.train import main\n"
        "n = []\n"
        "def kill(tmp, final):\n"
        "    n.extend([final.name] if final.suffix == '.pt' else [])\n"
        "    if len(n) == 4: os.kill(os.getpid(), signal.SIGKILL)\n"  # step 20, second file
        "files.BEFORE_REPLACE = kill\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *tiny_args()], cwd=ROOT, capture_output=True, timeout=TIMEOUT
    )
    assert proc.returncode == -signal.SIGKILL
    assert train_main(tiny_args("train.resume=true")) == 0
    assert_same_state(tmp_path / "run" / "ckpt_best.pt", tmp_path / "straight" / "ckpt_best.pt")
    assert_same_state(tmp_path / "run" / "ckpt_last.pt", tmp_path / "straight" / "ckpt_last.pt")


# ---- SIGINT and SIGTERM from outside -----------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("during_write", [False, True])
def test_signal_from_outside_saves_and_exits_non_zero(
    tiny_args: Args, tmp_path: Path, server: Server, sig: int, during_write: bool
) -> None:
    run = tmp_path / "run"
    argv = tiny_args("train.max_steps=100000", "train.eval_interval=4")
    pid = server.start(argv, tmp_path / "a", slow_write=0.2 if during_write else 0.0)
    wait_for(lambda: (run / "ckpt_last.pt").is_file(), "the first checkpoint", pid)
    if during_write:  # the handler only sets a flag: the write finishes, then the run stops
        wait_for(lambda: bool(temps(run)), "a checkpoint write", pid)
    os.kill(pid, sig)
    assert server.ended(pid) == ("exit", 128 + sig)
    err = one_error_line((tmp_path / "a.err").read_text())
    step = load_checkpoint(run / "ckpt_last.pt")["step"]
    assert f"stopped by {signal.Signals(sig).name} at step {step}" in err
    assert "continue with train.resume=true" in err
    assert not temps(run)
    all_checkpoints_load(run)
    resumed = tiny_args(f"train.max_steps={step + 3}", "train.resume=true")
    assert train_main(resumed) == 0
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == step + 3


def test_rerunning_a_stopped_command_keeps_the_run_and_says_how_to_go_on(
    tiny_args: Args, tmp_path: Path, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C, then up-arrow and Enter: the same command again must not wipe the checkpoints."""
    run = tmp_path / "run"
    argv = tiny_args("train.max_steps=100000", "train.eval_interval=4")
    pid = server.start(argv, tmp_path / "a")
    wait_for(lambda: (run / "ckpt_last.pt").is_file(), "the first checkpoint", pid)
    os.kill(pid, signal.SIGINT)
    assert server.ended(pid) == ("exit", 128 + signal.SIGINT)
    saved = {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".lock"}
    assert train_main(argv) == 2  # the very same command
    err = one_error_line(capsys.readouterr().err)
    assert f"{run} already holds a run (ckpt_best.pt, ckpt_last.pt)" in err
    assert "train.resume=true" in err and "train.overwrite=true" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".lock"} == saved
    step = load_checkpoint(run / "ckpt_last.pt")["step"]
    assert train_main(tiny_args(f"train.max_steps={step + 2}", "train.resume=true")) == 0
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == step + 2
    assert train_main(tiny_args("train.max_steps=2", "train.overwrite=true")) == 0  # asked for
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == 2
    assert [r["step"] for r in rows(run)][-1] == "2"


# ---- a failing disk ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_checkpoint_write_error_keeps_previous_and_says_what_happened(
    tiny_args: Args,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
) -> None:
    """The write itself fails (as a full disk or a folder turned read-only would make it)."""
    before: list[bytes] = []

    def hook(tmp: Path, final: Path) -> None:
        if final.name == "ckpt_last.pt" and final.exists():
            before.append(final.read_bytes())
            raise OSError(code, os.strerror(code), str(tmp))

    monkeypatch.setattr(files, "BEFORE_REPLACE", hook)
    assert train_main(tiny_args()) == 1
    err = one_error_line(capsys.readouterr().err)
    assert os.strerror(code) in err and "ckpt_last.pt" in err and "previous file is intact" in err
    run = tmp_path / "run"
    assert (run / "ckpt_last.pt").read_bytes() == before[0]
    assert load_checkpoint(run / "ckpt_last.pt")["step"] == 10
    assert not temps(run, "")


@pytest.mark.parametrize("target", ["log.csv", "config.yaml"])
def test_other_write_errors_are_one_line_not_a_traceback(
    tiny_args: Args,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: str,
) -> None:
    """Found by this battery: an OSError outside the checkpoint writer (the log, the config) used
    to escape as a traceback."""
    real_open = Path.open

    def failing_open(self: Path, mode: str = "r", *a: object, **k: object):  # type: ignore[no-untyped-def]
        if self.name == target and "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_open(self, mode, *a, **k)  # type: ignore[arg-type]

    def failing_write(path: object, text: str) -> None:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    if target == "log.csv":
        monkeypatch.setattr(Path, "open", failing_open)
    else:
        monkeypatch.setattr(rundir, "save_config", lambda cfg, p: failing_write(p, ""))
    assert train_main(tiny_args()) == 1
    err = one_error_line(capsys.readouterr().err)
    assert target in err and ("No space left" in err or "Permission denied" in err)


# ---- NaN ---------------------------------------------------------------------------------------


def poison_at(step: int) -> Hooks:
    def hook(t: Trainer, s: int) -> None:
        if s == step:
            with torch.no_grad():
                t.model.lm_head.weight.fill_(float("nan"))

    return Hooks(after_step=hook)


def test_nan_at_an_eval_step_is_never_saved(
    tiny_args: Args, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Found by this battery: weights gone bad at an evaluation step were saved to ckpt_last (the
    training losses so far were finite) and the next step's stop called that checkpoint good."""
    monkeypatch.setattr(train_mod, "Hooks", lambda: poison_at(10))
    assert train_main(tiny_args("train.eval_interval=5")) == 1
    err = one_error_line(capsys.readouterr().err)
    assert "non-finite validation loss (nan) at step 10" in err
    assert "ckpt_last.pt (step 5) is intact" in err
    ck = load_checkpoint(tmp_path / "run" / "ckpt_last.pt")
    assert ck["step"] == 5 and all(torch.isfinite(v).all() for v in ck["model"].values())
    monkeypatch.setattr(train_mod, "Hooks", Hooks)
    assert train_main(tiny_args("train.eval_interval=5", "train.resume=true", "train.lr=1e-3")) == 0
    ck = load_checkpoint(tmp_path / "run" / "ckpt_last.pt")
    assert ck["step"] == 20 and all(torch.isfinite(v).all() for v in ck["model"].values())


@pytest.mark.parametrize("k", [3, 5])  # inside a log window / right on a log row
def test_non_finite_loss_at_step_k_names_k(
    tiny_args: Args,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    k: int,
) -> None:
    """The loss itself (not the weights) turns inf at step k, with gradient accumulation."""
    real_forward = TinyGPT.forward
    calls = {"n": 0}

    def forward(self, idx, targets=None):  # type: ignore[no-untyped-def]
        logits, loss = real_forward(self, idx, targets)
        if self.training and targets is not None:
            calls["n"] += 1
            if calls["n"] == 2 * (k - 1) + 2:  # second micro-step of step k
                loss = loss * float("inf")
        return logits, loss

    monkeypatch.setattr(TinyGPT, "forward", forward)
    assert train_main(tiny_args("train.grad_accum=2")) == 1
    err = one_error_line(capsys.readouterr().err)
    assert f"non-finite training loss (inf) at step {k}" in err
    assert "no checkpoint was written" in err


# ---- two runs, one folder ----------------------------------------------------------------------


def test_second_live_run_is_refused_and_a_killed_runs_lock_is_not_stuck(
    tiny_args: Args, tmp_path: Path, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    pid = server.start(tiny_args("train.max_steps=100000"), tmp_path / "first")
    wait_for(lambda: (run / "ckpt_last.pt").is_file(), "the first run's checkpoint", pid)
    assert train_main(tiny_args("train.resume=true")) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"in use by pid {pid}" in err and "train.out_dir" in err
    assert (run / "ckpt_last.pt").is_file()  # the refused run touched nothing
    os.kill(pid, signal.SIGKILL)
    assert server.ended(pid) == ("signal", signal.SIGKILL)
    assert (run / ".lock").is_file()  # left behind, but the OS dropped the lock with the process
    assert train_main(tiny_args("train.resume=true", "train.max_steps=30")) == 0
