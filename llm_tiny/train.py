"""Train a TinyGPT from a YAML config plus `key=value` overrides; resumable bit for bit on CPU.

    python -m llm_tiny.train configs/tiny.yaml train.max_steps=500 model.rope=true
    torchrun --nproc_per_node=2 -m llm_tiny.train configs/tiny.yaml      # data parallel

A run folder (train.out_dir) holds config.yaml, log.csv, ckpt_last.pt and ckpt_best.pt. log.csv gets a row
every log_interval steps and at every evaluation (val_* columns are empty on rows without one); train_loss
is the mean training loss over the steps since the previous row. Step 0 is an evaluation of the untrained
model. Ctrl-C or SIGTERM saves ckpt_last.pt at the end of the current step and exits non-zero;
train.resume=true continues from it. train.init_from=CKPT starts a new run from another run's weights
and tokenizer (fine-tuning; llm_tiny.init_from).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from llm_tiny import checkpoint as ckpt_io
from llm_tiny import init_from, runlog
from llm_tiny.batches import fixed_offsets, get_batch, windows
from llm_tiny.budget import Budget
from llm_tiny.config import (
    Config,
    ModelCfg,
    dump_config,
    load_config,
    save_config,
    split_args,
    valid_keys,
)
from llm_tiny.data import Corpus, prepare
from llm_tiny.engine import bpb_metrics, bpb_sums, train_step
from llm_tiny.errors import ArgumentParser, Diverged, RunError, UserError, cli, one_line
from llm_tiny.filekind import run_checkpoints
from llm_tiny.files import RunLock, remove_stale_temps
from llm_tiny.optim import lr_at, optimizer_for
from llm_tiny.runtime import Dist, StopSignal, agree, pick_amp, pick_device, process_group
from llm_tiny.suggest import closest_keys
from model.gpt import GPTConfig, TinyGPT

RUN_FILES = ("log.csv", "eval.csv", "ckpt_last.pt", "ckpt_best.pt")
FRESH: dict[str, Any] = {
    "step": 0,
    "best": math.inf,
    "budget_plan": None,
    "elapsed_s": 0.0,
    "pending": [],
}


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


def gpt_config(model: ModelCfg, vocab_size: int) -> GPTConfig:
    """The model.gpt.GPTConfig for a config's model section and a tokenizer's vocabulary size."""
    try:
        return GPTConfig(
            vocab_size=vocab_size, **{f.name: getattr(model, f.name) for f in fields(model)}
        )
    except ValueError as e:
        raise UserError(f"bad model config: {one_line(e)}") from None


def refuse_to_overwrite(out: Path) -> None:
    """A UserError if `out` holds a run's checkpoints: starting afresh there would delete them."""
    held = run_checkpoints(out)
    if held:
        raise UserError(
            f"{out} already holds a run ({', '.join(p.name for p in held)}); continue it "
            "with train.resume=true, or start over with train.overwrite=true (which deletes it)"
        )


class Trainer:
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
            if d.master:  # a run killed mid-write leaves its temp file; we own the folder now
                undo.enter_context(RunLock(self.out))
                remove_stale_temps(self.out, (*RUN_FILES, "config.yaml", init_from.TOKENIZER_FILE))
            undo.callback(torch.set_num_threads, torch.get_num_threads())  # threads: this run's
            self.device = pick_device(t.device, d.local_rank)
            self.amp_dtype = pick_amp(t.amp, self.device)
            if t.threads:
                torch.set_num_threads(t.threads)
            resume = self._resume_checkpoint(t.resume)
            if resume is None and not t.overwrite:
                refuse_to_overwrite(self.out)
            self.cfg, init, src, src_path = self._source(cfg, resume, set_keys)
            t_prep = time.perf_counter()
            self.corpus = self._prepare(src, src_path)
            self.prep_seconds = time.perf_counter() - t_prep  # tokenizer training, token caching
            self.corpus.check_length(self.cfg.model.block_size, self.cfg.data.path)
            self.fingerprint = self.corpus.tokenizer.fingerprint()
            t = self.cfg.train
            torch.manual_seed(t.seed)
            self.model = TinyGPT(gpt_config(self.cfg.model, self.corpus.tokenizer.vocab_size))
            self.model.to(self.device)
            if init is not None:
                ckpt_io.load_weights(self.model, init["model"], src_path)
                self.log(
                    f"initialized from {src_path} (trained {init['step']} steps); optimizer, "
                    "schedule and step start fresh"
                )
            self.opt = optimizer_for(self.model, t, self.device.type)
            self.scaler = torch.amp.GradScaler(
                self.device.type, enabled=self.amp_dtype == torch.float16
            )
            self.gen = torch.Generator().manual_seed(t.seed)  # batch offsets
            place = FRESH if resume is None else self._restore(resume)
            self.step, self.best = int(place["step"]), float(place["best"])
            self.pending: list[torch.Tensor | float] = list(place["pending"])
            plan = place["budget_plan"]  # a resumed run keeps its budget's schedule
            plan = None if plan is None or t.time_budget_s is None else max(plan, self.step)
            self.total = t.max_steps if plan is None else plan  # the schedule's length
            self.budget = Budget(
                t.time_budget_s, t.max_steps, t.eval_interval, t.log_interval, self.device, plan
            )
            self.csv = self._open_folder(resume is not None)
            self.fwd = self._wrap(self.model)
            self.val_offsets = fixed_offsets(
                self.corpus.val, self.cfg.model.block_size, t.eval_batches * t.batch_size
            )
            self.token_bytes = torch.from_numpy(self.corpus.token_bytes).to(self.device)
            self.eval_seconds = self.eval_time = 0.0  # the last evaluation's; since the last row
            self.last_saved = self.step if resume is not None else None
            self.t0 = time.perf_counter() - float(place["elapsed_s"])
            self.row_time, self.row_step = time.perf_counter(), self.step
            self.undo = undo.pop_all()

    def close(self) -> None:
        """Let the run folder go and give the caller its torch thread count back."""
        self.undo.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, msg: str) -> None:
        """Print a line from rank 0, above the progress bar if there is one."""
        if self.dist.master:
            if self.bar is not None and not self.bar.disable:
                self.bar.write(msg)
            else:
                self._log(msg)

    # ---- setup -------------------------------------------------------------------------------
    def _resume_checkpoint(self, resume: bool) -> dict[str, Any] | None:
        if resume and self.last_path.is_file():
            return ckpt_io.load_checkpoint(self.last_path)
        if resume:
            self.log(f"note: no {self.last_path} to resume from; starting fresh")
        return None

    def _source(
        self, cfg: Config, resume: dict | None, set_keys: Collection[str] | None
    ) -> tuple[Config, dict | None, dict | None, Path]:
        """(the run's config, the checkpoint whose weights start it (train.init_from, not when
        resuming), the checkpoint whose tokenizer it uses if not its own, that one's path)."""
        if cfg.train.init_from is None:
            return cfg, None, resume, self.last_path
        init_path = Path(cfg.train.init_from)
        cfg, init = init_from.start(cfg, resume, self.out, set_keys, self.dist.master)
        if init is None:
            return cfg, None, resume, self.last_path
        return cfg, init, init, init_path

    def _prepare(self, src: dict | None, src_path: Path) -> Corpus:
        """The tokenized corpus: rank 0 trains and encodes, the others then read its cache."""
        tok = None if src is None else ckpt_io.tokenizer_of(src, src_path)
        show = self.cfg.train.progress and sys.stderr.isatty()
        if self.dist.master:
            corpus = prepare(self.cfg.data, tokenizer=tok, log=self.log, progress=show)
        if self.dist.world_size > 1:
            dist.barrier()
        if not self.dist.master:
            corpus = prepare(self.cfg.data, tokenizer=tok, log=self.log, progress=show)
        return corpus

    def _restore(self, ck: dict[str, Any]) -> dict[str, Any]:
        place = ckpt_io.restore(ck, self.last_path, self.model, self.opt, self.scaler, self.gen)
        self.log(f"resumed from {self.last_path} at step {place['step']}")
        return place

    def _open_folder(self, resumed: bool) -> runlog.CSVLogger | None:
        """Rank 0: the run folder made ready (a fresh run's old files gone, a resumed run's log cut
        at its checkpoint), config.yaml written, and the log.csv writer; other ranks: None."""
        if not self.dist.master:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        if resumed:
            runlog.truncate_log(self.out / "log.csv", self.step)
        else:
            for name in RUN_FILES:
                (self.out / name).unlink(missing_ok=True)
        save_config(self.cfg, self.out / "config.yaml")
        return runlog.writer(self.out / "log.csv")

    def _wrap(self, model: TinyGPT) -> torch.nn.Module:
        """What the loop calls: the model, compiled (train.compile), in DDP with several processes."""
        fwd: torch.nn.Module = model
        if self.cfg.train.compile:
            fwd = torch.compile(model)  # type: ignore[assignment]
        if self.dist.world_size > 1:  # gradients all-reduced on each step's last micro-batch
            ids = [self.device.index] if self.device.type == "cuda" else None
            fwd = DDP(fwd, device_ids=ids)
        return fwd

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        """Train, evaluate and checkpoint to the last step; returns the final metrics."""
        d, t = self.dist, self.cfg.train
        n_params = self.model.num_params()
        st, docs = self.corpus.stats, ""
        if not st.get("single", True):
            docs = f" in {st['splits']['train'][0]:,} / {st['splits']['val'][0]:,} documents"
        self.log(
            f"{n_params:,} parameters, vocab {self.model.cfg.vocab_size}, "
            f"{self.corpus.train.n:,} train / {self.corpus.val.n:,} val tokens{docs} "
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
        params = list(self.model.parameters())
        while self.step < self.total:
            lr = lr_at(
                self.step, t.lr, t.min_lr, t.warmup_steps, self.total, t.schedule, t.decay_frac
            )
            for g in self.opt.param_groups:
                g["lr"] = lr
            x, y = get_batch(
                self.corpus.train,
                t.batch_size,
                self.cfg.model.block_size,
                self.gen,
                d.rank,
                d.world_size,
            )
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss = train_step(
                self.fwd,
                self.opt,
                self.scaler,
                (x, y),
                t.grad_accum,
                t.grad_clip,
                params,
                self.amp_dtype,
            )
            self.step += 1
            self.pending.append(loss)
            bar.update(1)
            if self.hooks.after_step is not None:
                self.hooks.after_step(self, self.step)
            now = self.elapsed()
            if t.compile and self.step == first_step + 1:
                self.log(f"torch.compile: first step took {now - start:.1f} s, compiling included")
            note = self.budget.observe(self.step, first_step, now, self.eval_seconds)
            if note is not None:  # the time budget's schedule is laid out
                self.total = bar.total = self.budget.plan
                bar.refresh()
                self.log(note)
            is_row = (
                self.step % t.log_interval == 0
                or self.step % t.eval_interval == 0
                or self.step == self.total
            )
            stopping, late = self._vote(stop, self.budget.late(now), is_row)
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

    def _vote(self, stop: StopSignal, late: bool, is_row: bool) -> tuple[bool, bool]:
        """(stop now, out of time): this process's view, or in DDP the ranks' common one, which
        they agree on at log rows only (one small all_reduce there, none on other steps)."""
        if self.dist.world_size == 1:
            return stop.signum is not None, late
        if not is_row:
            return False, False
        flags = agree([float(stop.signum is not None), float(late)], self.device, "max")
        agreed_stop, agreed_late = (bool(v > 0) for v in flags)
        if agreed_stop and stop.signum is None:  # another rank was signalled
            stop.signum = signal.SIGTERM
        return agreed_stop, agreed_late

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
        """Mean training loss since the last row (over all ranks); stop on a non-finite one.

        keep=True (a stop between rows) checks the losses but keeps them, as floats, for the
        checkpoint: the resumed run's next row then averages the same steps as an unbroken run.
        """
        if not self.pending:
            return None
        local = torch.stack([torch.as_tensor(v, device=self.device) for v in self.pending])
        vals = local.double()
        if self.dist.world_size > 1:
            dist.all_reduce(vals)
            vals /= self.dist.world_size
        losses = vals.tolist()
        first_step = self.step - len(losses) + 1
        for i, v in enumerate(losses):
            if not math.isfinite(v):
                self._non_finite("training", v, first_step + i)
        self.pending = local.tolist() if keep else []
        return math.fsum(losses) / len(losses)

    def _non_finite(self, what: str, value: float, step: int) -> NoReturn:
        kept = (
            f"the last good checkpoint {self.last_path} (step {self.last_saved}) is intact"
            if self.last_saved is not None
            else "no checkpoint was written"
        )
        raise Diverged(
            f"non-finite {what} loss ({value}) at step {step}; stopped, {kept}; "
            "resume with a lower train.lr (train.resume=true train.lr=...)"
        )

    # ---- evaluation, logging, checkpoints -----------------------------------------------------
    def _evaluate(self) -> dict[str, float]:
        """Loss, perplexity and bits per byte on the fixed validation windows (all ranks share them)."""
        t0 = time.perf_counter()
        d, bs = self.dist, self.cfg.model.block_size
        offsets = self.val_offsets[d.rank :: d.world_size]
        batches = (
            windows(self.corpus.val, offsets[i : i + self.micro], bs)
            for i in range(0, len(offsets), self.micro)
        )
        sums = bpb_sums(self.model, batches, self.token_bytes, self.amp_dtype)
        if d.world_size > 1:
            dist.all_reduce(sums)
        m = bpb_metrics(sums)
        self.eval_seconds = time.perf_counter() - t0
        self.eval_time += self.eval_seconds
        return {"val_loss": m["loss"], "val_ppl": m["ppl"], "val_bpb": m["bpb"]}

    def _evaluate_and_log(
        self, step: int, train_loss: float | None, lr: float | None = None, is_eval: bool = True
    ) -> dict[str, float]:
        metrics = self._evaluate() if is_eval else {}
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        now = time.perf_counter()
        span = now - self.row_time - self.eval_time
        tokens = (step - self.row_step) * self.cfg.train.batch_size * self.cfg.model.block_size
        tps = tokens / span if span > 0 and tokens else None
        self.row_time, self.row_step, self.eval_time = now, step, 0.0
        if tps:
            metrics["tokens_per_s"] = tps
        if self.csv is not None:  # rank 0
            self.csv.log(
                {
                    "step": step,
                    "lr": lr,
                    "train_loss": train_loss,
                    "val_loss": metrics.get("val_loss"),
                    "val_ppl": metrics.get("val_ppl"),
                    "val_bpb": metrics.get("val_bpb"),
                    "tokens_per_s": tps,
                    "elapsed_s": self.elapsed(),
                }
            )
            if self.bar is not None and train_loss is not None:
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
        loop = {
            "step": self.step,
            "best": self.best,
            "total_steps": self.total,
            "budget_plan": self.budget.plan,
            "elapsed_s": self.elapsed(),
            "pending": self.pending,
        }
        state = ckpt_io.pack(
            self.model,
            self.cfg.to_dict(),
            self.opt,
            self.scaler,
            self.gen,
            self.corpus.tokenizer,
            self.fingerprint,
            loop,
        )
        # best before last: ckpt_last is the commit point, so a crash between the two leaves an old
        # last, whose resume redoes the steps and rewrites best, never a best older than last says
        paths = ([self.best_path] if improved else []) + [self.last_path]
        ckpt_io.save_checkpoint(state, paths)
        self.last_saved = self.step


def run_training(
    cfg: Config,
    hooks: Hooks | None = None,
    log: Callable[[str], None] = print,
    set_keys: Collection[str] | None = None,
) -> dict[str, float]:
    """Train per cfg (as one process, or one rank of a torchrun job) and return the final metrics:
    step, total_steps, val_loss, val_ppl, val_bpb (fixed validation windows), best_val_loss,
    train_loss, tokens_per_s (last row), params, elapsed_s (training, across resumes; the time budget
    counts this) and prep_s (tokenizer training and token caching in this process). set_keys: the
    dotted keys the user's YAML and overrides set (init_from.explicit_keys), which train.init_from
    checks against the checkpoint's model; None counts every non-default value as set."""
    with process_group(cfg.train.device), Trainer(cfg, hooks, log, set_keys) as trainer:
        return trainer.run()


EPILOG = """\
examples:
  python -m llm_tiny.train configs/tiny.yaml train.max_steps=300 train.lr=3e-3 model.rope=true
  python -m llm_tiny.train configs/finetune_tiny.yaml train.init_from=runs/pretrain_tinyshakespeare/ckpt_last.pt
  torchrun --nproc_per_node=N -m llm_tiny.train ...     (data parallel)

resume versus init_from:
  train.resume=true     continue THIS run (train.out_dir) from its ckpt_last.pt: the same step,
                        optimizer state, LR schedule and RNG, as if it had never stopped
  train.init_from=CKPT  start a NEW run from another run's weights (fine-tuning): CKPT's model and
                        tokenizer (the new corpus is encoded with it); optimizer, schedule and step
                        start fresh. A model key other than dropout, attn_dropout and attn that
                        differs from CKPT's is refused. Given both, resume wins once ckpt_last.pt
                        exists (a stopped fine-tuning run continues), else the run starts from CKPT.
  train.overwrite=true  start over in a train.out_dir that holds a run (deletes its checkpoints);
                        without resume or overwrite, such a folder is refused, never wiped
"""


def override_for(flag: str) -> str | None:
    """`--lr` -> `train.lr=...`: settings are overrides here, not flags."""
    close = closest_keys(flag.lstrip("-").replace("-", "_"), valid_keys())
    return f"{close[0]}=..." if close else None


@cli
def main(argv: list[str] | None = None) -> int:
    """python -m llm_tiny.train [CONFIG] [section.key=value ...]"""
    p = ArgumentParser(
        prog="python -m llm_tiny.train",
        description="Train a TinyGPT from a YAML config and dotted key=value overrides.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        flag_hint=override_for,
    )
    p.add_argument("config", nargs="?", help="YAML config file (default: configs/tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=3e-4")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    a = p.parse_args(argv)
    path, overrides = split_args(a.config, a.overrides)
    cfg = load_config(path, overrides)
    if a.print_config:
        print(dump_config(cfg), end="")
        return 0
    run_training(cfg, set_keys=init_from.explicit_keys(path, overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
