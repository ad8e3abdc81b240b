"""The Trainer: one training run, built whole by its constructor (what the run starts from: fresh,
resumed or init_from; the corpus; model, optimizer, scaler), trained by run(), whose loop reads top to
bottom: learning rate, batch, one optimizer step (llm_tiny.engine), then at log rows the mean loss, at
eval_interval an evaluation and checkpoints (llm_tiny.checkpoint)."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from tqdm import tqdm

from llm_tiny import checkpoint as ckpt_io
from llm_tiny import init_from, rundir, runlog
from llm_tiny.batches import fixed_offsets, get_batch, window_batches
from llm_tiny.budget import Budget
from llm_tiny.config import Config
from llm_tiny.data import Corpus, prepare
from llm_tiny.engine import bpb_metrics, bpb_sums, train_step
from llm_tiny.errors import Diverged, RunError, UserError
from llm_tiny.heartbeat import Heartbeat
from llm_tiny.optim import lr_at, optimizer_for, set_lr
from llm_tiny.runtime import Dist, StopSignal, pick_amp, pick_device, rank_zero_first, wrap_model
from model.gpt import TinyGPT

# where a fresh run starts (a resumed one: checkpoint.restore)
FRESH: dict[str, Any] = dict(step=0, best=math.inf, budget_plan=None, elapsed_s=0.0, pending=[])


class _Bar(tqdm):
    """tqdm without its monitor thread. That thread wakes every 10 s and takes tqdm's lock; a process
    forked while it holds the lock (the fault tests fork training processes) hangs at its first bar.
    """

    monitor_interval = 0


@dataclass
class Hooks:
    """Test and tooling hooks: after_step(trainer, step) runs after each optimizer step, where step
    counts the updates done; it may inspect or poison trainer.model, send a signal, or raise."""

    after_step: Callable[[Trainer, int], None] | None = None


def prepare_corpus(
    cfg: Config, src: Mapping[str, Any] | None, src_path: Path, d: Dist, log: Callable[[str], None]
) -> Corpus:
    """The tokenized corpus, encoded with src's tokenizer when a checkpoint gives one; rank 0
    trains and encodes, the others then read its cache. Long enough for a block, or a UserError."""
    tok = None if src is None else ckpt_io.tokenizer_of(src, src_path)  # checked: its fingerprint
    fp = None if src is None else src["tokenizer_fingerprint"]
    show = cfg.train.progress and sys.stderr.isatty()
    corpus = rank_zero_first(lambda: prepare(cfg.data, tok, log, show, fp), d)
    corpus.check_length(cfg.model.block_size, cfg.data.path)
    return corpus


def build_model(cfg: Config, vocab_size: int, device: torch.device) -> TinyGPT:
    """A freshly initialized TinyGPT for the config (seeded by train.seed) on the device."""
    torch.manual_seed(cfg.train.seed)
    return TinyGPT(ckpt_io.gpt_config(cfg.model, vocab_size)).to(device)


def diverged(what: str, value: float, step: int, last: Path, saved: int | None) -> Diverged:
    """The error a non-finite loss stops a run with: what is intact and how to go on."""
    kept = (
        f"the last good checkpoint {last} (step {saved}) is intact"
        if saved is not None
        else "no checkpoint was written"
    )
    return Diverged(
        f"non-finite {what} loss ({value}) at step {step}; stopped, {kept}; "
        "resume with a lower train.lr (train.resume=true train.lr=...)"
    )


class Trainer(contextlib.AbstractContextManager):
    """One training run. Building it takes the run folder (rank 0), prepares the corpus and builds
    the model, optimizer and state (fresh, resumed or init_from); run() trains; close() (or leaving
    a `with` block) lets the folder go. Rank 0 writes, every rank computes."""

    def __init__(
        self,
        cfg: Config,
        hooks: Hooks | None = None,
        log: Callable[[str], None] = print,
        set_keys: Collection[str] | None = None,
    ):
        """set_keys: the keys the user set, for train.init_from (None: the non-default values)."""
        self.hooks, self._log, self.dist = hooks or Hooks(), log, Dist.from_env()
        self.bar: tqdm | None = None  # the progress bar, while the loop runs
        t, d = cfg.train, self.dist
        self.beat = Heartbeat(log, d.master and t.progress and not sys.stderr.isatty())
        per_rank, rem = divmod(t.batch_size, d.world_size)
        if rem or per_rank % t.grad_accum:
            raise UserError(
                f"train.batch_size ({t.batch_size}) must be divisible by processes x grad_accum "
                f"({d.world_size} x {t.grad_accum})"
            )
        self.micro = per_rank // t.grad_accum
        self.out = Path(t.out_dir or "runs/default")
        self.last_path, self.best_path = self.out / "ckpt_last.pt", self.out / "ckpt_best.pt"
        with contextlib.ExitStack() as undo:  # kept for close() once everything is built
            if d.master:
                rundir.claim(self.out, undo)
            undo.callback(torch.set_num_threads, torch.get_num_threads())  # threads: this run's
            self.device = pick_device(t.device, d.local_rank)
            self.amp_dtype = pick_amp(t.amp, self.device)
            if t.threads:
                torch.set_num_threads(t.threads)
            resume = rundir.resume_point(t.resume, t.overwrite, self.last_path, self.log)
            self.cfg, init, src, src_path = init_from.sources(cfg, resume, self.out, set_keys)
            t_prep = time.perf_counter()
            self.corpus = prepare_corpus(self.cfg, src, src_path, d, self.log)
            if d.master and src is not None and self.cfg.train.init_from is not None:
                init_from.save_tokenizer_copy(self.cfg, src)
            self.prep_seconds = time.perf_counter() - t_prep  # tokenizer training, token caching
            self.fingerprint = self.corpus.fingerprint  # the tokenizer's, for checkpoints
            t = self.cfg.train
            self.model = build_model(self.cfg, self.corpus.tokenizer.vocab_size, self.device)
            init_from.load_start_weights(self.model, init, src_path, self.log)
            self.opt = optimizer_for(self.model, t, self.device, self.amp_dtype)
            fp16 = self.amp_dtype == torch.float16
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
            self.gen = torch.Generator().manual_seed(t.seed)  # batch offsets
            place = FRESH
            if resume is not None:
                place = ckpt_io.restore(
                    resume, self.last_path, self.model, self.opt, self.scaler, self.gen
                )
                self.log(f"resumed from {self.last_path} at step {place['step']}")
            self.step, self.best = int(place["step"]), float(place["best"])
            self.budget = Budget(t, self.device, place["budget_plan"], self.step)
            self.total = t.max_steps if self.budget.plan is None else self.budget.plan
            resumed_at = None if resume is None else self.step
            csv = rundir.make_ready(self.out, self.cfg, resumed_at) if d.master else None
            tokens_per_step = t.batch_size * self.cfg.model.block_size
            self.rows = runlog.Rows(
                csv, self.step, place["pending"], tokens_per_step, self.device, d.world_size
            )
            self.fwd = wrap_model(self.model, t.compile, d)
            self.val_offsets = fixed_offsets(
                self.corpus.val, self.cfg.model.block_size, t.eval_batches * t.batch_size
            )
            self.token_bytes = torch.from_numpy(self.corpus.token_bytes).to(self.device)
            self.eval_seconds = 0.0  # the last evaluation's
            self.last_saved = self.step if resume is not None else None
            self.t0 = time.perf_counter() - float(place["elapsed_s"])
            self.undo = undo.pop_all()

    def close(self) -> None:
        """Let the run folder go and give the caller its torch thread count back."""
        self.undo.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, msg: str) -> None:
        """Print a line from rank 0, above the progress bar if there is one."""
        if self.dist.master:
            if self.bar is not None and not self.bar.disable:
                self.bar.write(msg)
            else:
                self._log(msg)
            self.beat.said()

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        """Train, evaluate and checkpoint to the last step; returns the final metrics."""
        d, t = self.dist, self.cfg.train
        n_params = self.model.num_params()
        self.log(
            f"{n_params:,} parameters, vocab {self.model.cfg.vocab_size}, {self.corpus.sizes()} "
            f"(ready in {self.prep_seconds:.1f} s), device {self.device}"
            + (f", {d.world_size} processes" if d.world_size > 1 else "")
        )
        metrics = self._evaluate_and_log(0, None) if self.step == 0 else {}
        show = t.progress and d.master and sys.stderr.isatty()
        self.bar = _Bar(total=self.total, initial=self.step, disable=not show, dynamic_ncols=True)
        stop = StopSignal()
        try:
            with stop.installed():
                metrics = self._loop(stop) or metrics
        finally:
            self.bar.close()
            self.bar = None
        if not metrics:  # resumed a finished run: report without logging a duplicate row
            metrics = self._evaluate()
        metrics.update(
            step=float(self.step),
            best_val_loss=self.best,
            params=float(n_params),
            elapsed_s=self.elapsed(),
            prep_s=self.prep_seconds,
            total_steps=float(self.total),
        )
        self.log(
            f"done: step {self.step}, val loss {metrics['val_loss']:.4f}, "
            f"ppl {metrics['val_ppl']:.2f}, bpb {metrics['val_bpb']:.4f}, "
            f"best {self.best:.4f} ({self.best_path}), {metrics['elapsed_s']:.1f} s"
        )
        return metrics

    def elapsed(self) -> float:
        """Seconds of training so far, across resumes."""
        return time.perf_counter() - self.t0

    def _loop(self, stop: StopSignal) -> dict[str, float]:
        t, d, bar = self.cfg.train, self.dist, self.bar
        assert bar is not None
        metrics: dict[str, float] = {}
        first_step, start = self.step, self.elapsed()
        params, bs, amp = list(self.model.parameters()), self.cfg.model.block_size, self.amp_dtype
        accum, clip = t.grad_accum, t.grad_clip
        while self.step < self.total:
            lr = lr_at(
                self.step, t.lr, t.min_lr, t.warmup_steps, self.total, t.schedule, t.decay_frac
            )
            set_lr(self.opt, lr)
            x, y = get_batch(self.corpus.train, t.batch_size, bs, self.gen, d.rank, d.world_size)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss = train_step(self.fwd, self.opt, self.scaler, (x, y), accum, clip, params, amp)
            self.step += 1
            self.rows.add(loss)
            bar.update(1)
            self.beat.step(self.step, (t.log_interval, t.eval_interval), self.total)
            if self.hooks.after_step is not None:
                self.hooks.after_step(self, self.step)
            now = self.elapsed()
            if t.compile and self.step == first_step + 1:
                self.log(f"torch.compile: first step took {now - start:.1f} s, compiling included")
            note = self.budget.observe(self.step, first_step, now, self.eval_seconds)
            if note is not None and self.budget.plan is not None:  # the schedule is laid out
                self.total = bar.total = self.budget.plan
                bar.refresh()
                self.log(note)
            is_row = (
                self.step % t.log_interval == 0
                or self.step % t.eval_interval == 0
                or self.step == self.total
            )
            stopping, late = stop.vote(self.budget.late(now), is_row, self.device)
            if late and self.step < self.total:
                self.log(f"time budget of {t.time_budget_s:g} s reached at step {self.step}")
                self.total, is_row = self.step, True
            is_eval = self.step % t.eval_interval == 0 or self.step == self.total
            if is_row:
                train_loss = self._flush_losses()
                metrics = self._evaluate_and_log(self.step, train_loss, lr, is_eval) or metrics
            if stopping:
                self._stop(stop.signum or signal.SIGINT)
        return metrics

    def _stop(self, signum: int) -> NoReturn:
        """Save ckpt_last.pt at this step and end the run with the signal's exit code."""
        self._flush_losses(keep=True)  # check them, but the next row still averages them
        self._save(improved=False)
        raise RunError(
            f"stopped by {signal.Signals(signum).name} at step {self.step}; saved "
            f"{self.last_path} (continue with train.resume=true)",
            exit_code=128 + signum,
        )

    def _flush_losses(self, keep: bool = False) -> float | None:
        """Mean training loss since the last row (over all ranks); stop on a non-finite one."""
        losses = self.rows.losses(keep)
        first_step = self.step - len(losses) + 1
        for i, v in enumerate(losses):
            if not math.isfinite(v):
                self._non_finite("training", v, first_step + i)
        return math.fsum(losses) / len(losses) if losses else None

    def _non_finite(self, what: str, value: float, step: int) -> NoReturn:
        raise diverged(what, value, step, self.last_path, self.last_saved)

    # ---- evaluation, logging, checkpoints -----------------------------------------------------
    def _evaluate(self) -> dict[str, float]:
        """Loss, perplexity and bits per byte on the fixed validation windows (all ranks share them)."""
        t0 = time.perf_counter()
        d, bs = self.dist, self.cfg.model.block_size
        offsets = self.val_offsets[d.rank :: d.world_size]
        batches = window_batches(self.corpus.val, offsets, self.micro, bs)
        batches = self.beat.each(batches, -(-len(offsets) // self.micro), f"eval, step {self.step}")
        sums = bpb_sums(self.model, batches, self.token_bytes, self.amp_dtype)
        if d.world_size > 1:
            dist.all_reduce(sums)
        m = bpb_metrics(sums)
        self.eval_seconds = time.perf_counter() - t0
        self.rows.throughput.pause(self.eval_seconds)
        return {"val_loss": m["loss"], "val_ppl": m["ppl"], "val_bpb": m["bpb"]}

    def _evaluate_and_log(
        self, step: int, train_loss: float | None, lr: float | None = None, is_eval: bool = True
    ) -> dict[str, float]:
        metrics = self._evaluate() if is_eval else {}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        tps = self.rows.write(step, lr, metrics, self.elapsed())
        if self.dist.master and self.bar is not None and train_loss is not None:
            post = {"loss": f"{train_loss:.3f}", "lr": f"{lr:.2e}"}
            if tps:
                post["tok/s"] = f"{tps:,.0f}"
            self.bar.set_postfix(post, refresh=False)
        if is_eval:
            if not math.isfinite(metrics["val_loss"]):  # weights gone bad: never save them
                self._non_finite("validation", metrics["val_loss"], step)
            if step > 0:
                improved = metrics["val_loss"] < self.best
                self.best = min(self.best, metrics["val_loss"])
                self._save(improved)
            self.log(
                f"step {step}: val loss {metrics['val_loss']:.4f}, bpb {metrics['val_bpb']:.4f}"
                + (f", train loss {train_loss:.4f}" if train_loss is not None else "")
            )
        return metrics if is_eval else {}

    def _save(self, improved: bool) -> None:
        if not self.dist.master:
            return
        state = ckpt_io.pack(self)
        # best before last: ckpt_last is the commit point, so a crash between the two leaves an old
        # last, whose resume redoes the steps and rewrites best, never a best older than last says
        paths = ([self.best_path] if improved else []) + [self.last_path]
        ckpt_io.save_checkpoint(state, paths)
        self.last_saved = self.step
