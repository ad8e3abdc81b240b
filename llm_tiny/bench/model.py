"""Benchmark a config: training, inference and generation throughput, peak memory, MFU.

    python -m llm_tiny.bench --config configs/tiny.yaml --compare model.attn=naive --out BENCH.md

Every number is the median of several timed repeats after a warm-up, with the device synchronized
before each clock read. `--compare` adds a variant of the same config with one setting changed; the
variants' repeats are interleaved, so a ratio between them is measured over the same stretch of time
(on a shared machine, the other load hits both sides alike). Random token ids stand in for data:
throughput does not depend on which tokens flow through the model. MFU divides by a GPU's datasheet
peak, or by a CPU's own matmul peak measured in the same run (`llm_tiny.bench.peak`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch

from llm_tiny import engine, runtime
from llm_tiny.bench import tokenizer as tok_bench
from llm_tiny.bench.options import Settings, parse_args, settings
from llm_tiny.bench.peak import cpu_peaks
from llm_tiny.bench.report import (
    PeakOf,
    Result,
    append_report,
    body,
    device_description,
    device_notes,
    load_average,
    run_notes,
)
from llm_tiny.checkpoint import gpt_config
from llm_tiny.config import Config, load_config
from llm_tiny.errors import UserError, cli
from llm_tiny.metrics import peak_rss_mb, reset_peak_rss
from llm_tiny.optim import optimizer_for
from model.gpt import TinyGPT

# What a CUDA run compares against the base config when no --compare is given.
CUDA_COMPARES = ("model.attn=naive", "train.amp=fp16", "train.amp=off")


@dataclass
class Variant:
    """One config under test, with what it needs resident while its repeats are timed."""

    name: str
    cfg: Config
    device: torch.device
    amp: torch.dtype | None = None  # autocast dtype; None is full fp32
    threads: int | None = None  # torch CPU threads while this variant runs
    model: TinyGPT | None = None
    fwd: torch.nn.Module | None = None  # the model, or its torch.compile wrapper (train.compile)
    opt: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    prompt: torch.Tensor | None = None
    times: dict[str, list[float]] = field(default_factory=dict)
    last_loss: float = math.nan
    peak_mb: float = math.nan


def pick_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu (train's rules: a missing GPU is a UserError)."""
    return runtime.pick_device(name, 0)


def amp_name(dtype: torch.dtype | None) -> str:
    """fp32, bf16 or fp16: how a variant computes."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def sync(device: torch.device) -> None:
    """Wait for queued device work, so the clock reads the time the work took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(v: Variant, batch_size: int, prompt_len: int, seed: int) -> None:
    """Model, optimizer, scaler, a random batch and a random prompt for v, on its device."""
    cfg, t = v.cfg, v.cfg.train
    torch.manual_seed(seed)
    gcfg = gpt_config(cfg.model, cfg.data.vocab_size)
    v.model = TinyGPT(gcfg).to(v.device)
    # as in training, only the training/eval forward is compiled; the warm-up pays the compile
    v.fwd = torch.compile(v.model) if t.compile else v.model  # type: ignore[assignment]
    v.opt = optimizer_for(v.model, t, v.device, v.amp)
    v.scaler = torch.amp.GradScaler(v.device.type, enabled=v.amp == torch.float16)
    g = torch.Generator().manual_seed(seed)
    T = gcfg.block_size
    xy = torch.randint(gcfg.vocab_size, (batch_size, T + 1), generator=g)
    v.batch = (xy[:, :-1].to(v.device), xy[:, 1:].to(v.device))
    v.prompt = torch.randint(gcfg.vocab_size, (1, prompt_len), generator=g).to(v.device)


def free(v: Variant) -> None:
    """Drop the variant's tensors and hand the memory back (to the OS on glibc, to CUDA's pool)."""
    v.model = v.fwd = v.opt = v.scaler = v.batch = v.prompt = None
    gc.collect()
    if v.device.type == "cuda":
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):  # glibc only; elsewhere a no-op
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def train_step(v: Variant) -> None:
    """One optimizer step over the whole batch, in grad_accum micro-steps: training's own step."""
    assert v.model is not None and v.fwd is not None and v.opt is not None
    assert v.scaler is not None and v.batch is not None
    t = v.cfg.train
    if v.batch[0].size(0) % t.grad_accum:
        raise UserError(
            f"--batch-size ({v.batch[0].size(0)}) must be divisible by train.grad_accum "
            f"({t.grad_accum})"
        )
    v.model.train()
    params = list(v.model.parameters())
    loss = engine.train_step(
        v.fwd, v.opt, v.scaler, v.batch, t.grad_accum, t.grad_clip, params, v.amp
    )
    v.last_loss = loss.item()  # .item() syncs; harmless, the clock is read after a sync anyway


def infer_step(v: Variant) -> None:
    """One forward pass over the batch, no gradients (what evaluation does)."""
    assert v.model is not None and v.fwd is not None and v.batch is not None
    v.model.eval()
    with torch.no_grad(), runtime.autocast(v.device, v.amp):
        v.fwd(v.batch[0])
    v.model.train()


def gen_step(v: Variant, new_tokens: int, use_cache: bool) -> None:
    """Sample new_tokens tokens after the prompt, with or without the KV cache."""
    assert v.model is not None and v.prompt is not None
    g = torch.Generator(v.device).manual_seed(0)
    with runtime.autocast(v.device, v.amp):
        v.model.generate(v.prompt, new_tokens, generator=g, use_cache=use_cache)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds one call of fn takes, device work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA allocator stats; Linux: the RSS high-water mark)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()


def peak_memory_mb(device: torch.device) -> float:
    """Peak bytes in MB since reset: CUDA tensor memory, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def phases(s: Settings) -> dict[str, Callable[[Variant], None]]:
    """The measured operations, by name."""
    return {
        "train": train_step,
        "infer": infer_step,
        "gen_kv": lambda v: gen_step(v, s.gen_tokens, True),
        "gen_nokv": lambda v: gen_step(v, s.gen_tokens, False),
    }


def use_threads(v: Variant) -> None:
    """Give torch the variant's CPU thread count (a process-wide setting, so set per call)."""
    if v.threads and torch.get_num_threads() != v.threads:
        torch.set_num_threads(v.threads)


def measure_memory(v: Variant, s: Settings) -> None:
    """Peak memory of one training step, one forward and a short generation, variant alone."""
    use_threads(v)
    gc.collect()
    reset_peak_memory(v.device)
    build(v, s.batch_size, s.prompt_len, s.seed)
    train_step(v)
    infer_step(v)
    gen_step(v, min(8, s.gen_tokens), True)
    sync(v.device)
    v.peak_mb = peak_memory_mb(v.device)
    free(v)


def measure(variants: Sequence[Variant], s: Settings, log: Callable[[str], None]) -> None:
    """Peak memory per variant alone, then interleaved warm-up and timed repeats of every phase."""
    for v in variants:
        log(f"memory: {v.name}")
        measure_memory(v, s)
    threads = torch.get_num_threads()
    for v in variants:
        build(v, s.batch_size, s.prompt_len, s.seed)
    for phase, fn in phases(s).items():
        log(f"timing: {phase}")
        for v in variants:
            use_threads(v)
            for _ in range(s.warmup):
                fn(v)
        for _ in range(s.repeats):
            for v in variants:
                use_threads(v)
                v.times.setdefault(phase, []).append(timed(functools.partial(fn, v), v.device))
    for v in variants:
        free(v)
    torch.set_num_threads(threads)


def bench_configs(
    config: str | None, overrides: Sequence[str], compares: Sequence[str], device: torch.device
) -> list[Variant]:
    """The base variant and one per --compare item (each a space-separated list of overrides)."""
    variants, default_threads = [], torch.get_num_threads()
    for name, extra in [("base", [])] + [(c, c.split()) for c in compares]:
        cfg = load_config(config, list(overrides) + extra)
        amp = runtime.pick_amp(cfg.train.amp, device)
        variants.append(Variant(name, cfg, device, amp, cfg.train.threads or default_threads))
    return variants


def rate(v: Variant, phase: str, tokens: int) -> float:
    """Tokens per second of a phase: its token count over the median of its timed repeats."""
    return tokens / statistics.median(v.times[phase])


def results(variants: Sequence[Variant], s: Settings, peak_of: PeakOf) -> list[Result]:
    """Each measured variant's figures for the table; MFU against the peak for its precision."""
    out = []
    for v in variants:
        assert v.model is None
        T = v.cfg.model.block_size
        model = TinyGPT(
            gpt_config(v.cfg.model, v.cfg.data.vocab_size)
        )  # on CPU: its parameter count and FLOPs formula
        tokens = s.batch_size * T
        out.append(
            Result(
                name=v.name,
                attn=model.attn_impl,
                amp=amp_name(v.amp),
                threads=v.threads if v.device.type == "cpu" else None,
                params=model.num_params(),
                batch=f"{s.batch_size}x{T}",
                train=rate(v, "train", tokens),
                infer=rate(v, "infer", tokens),
                gen_kv=rate(v, "gen_kv", s.gen_tokens),
                gen_nokv=rate(v, "gen_nokv", s.gen_tokens),
                peak_mb=v.peak_mb,
                last_loss=v.last_loss,
                flops_per_token=model.flops_per_token(T),
                peak_tflops=peak_of(amp_name(v.amp), v.threads if v.device.type == "cpu" else None),
            )
        )
    return out


@cli
def main(argv: list[str] | None = None) -> int:
    """Benchmark a config (and variants of it) and print a markdown table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = pick_device(args.device or load_config(args.config, args.overrides).train.device)
    compares = args.compare or (list(CUDA_COMPARES) if device.type == "cuda" else [])
    variants = bench_configs(args.config, args.overrides, compares, device)
    s = settings(args, variants[0].cfg)
    log = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)
    log(f"{len(variants)} variant(s) on {device_description(device)}")
    load_before = load_average()
    measure(variants, s, log)
    measured = {}
    if device.type == "cpu" and not args.peak_tflops:
        log("peak: matmul probe, fp32 and bf16")
        measured = cpu_peaks([v.threads or 0 for v in variants])
    peak_of, notes = device_notes(device, args.peak_tflops, measured)
    text = body(results(variants, s, peak_of), notes + run_notes(s, load_before))
    if args.tokenizer is not None:
        log("tokenizer benchmark (llm_tiny.bench.tokenizer)")
        corpus = Path(args.tokenizer) if args.tokenizer else None
        text += "\n\n" + (tok_bench.report(corpus) if corpus else tok_bench.report())
    print(text)
    if args.out:
        heading = (
            f"{date.today().isoformat()} · {device_description(device)} · torch {torch.__version__}"
        )
        command = "python -m llm_tiny.bench " + shlex.join(argv)
        append_report(Path(args.out), heading, command, text)
        log(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
