"""bench: the table on a tiny config (every column, sane numbers), the report file, memory, MFU."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from llm_tiny.bench import model as bench
from llm_tiny.bench import peak, report
from llm_tiny.bench import tokenizer as tok_bench
from llm_tiny.checkpoint import gpt_config
from llm_tiny.config import load_config
from model.gpt import TinyGPT

QUICK = ["--repeats", "2", "--warmup", "1", "--batch-size", "4", "--gen-tokens", "4"]


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the first markdown table in text."""
    all_lines = text.splitlines()
    start = next(i for i, ln in enumerate(all_lines) if ln.startswith("|"))
    lines = []
    for ln in all_lines[start:]:
        if not ln.startswith("|"):
            break
        lines.append(ln)
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    assert set("".join(cells[1])) <= set("-: ")  # the rule under the header
    return cells[0], cells[2:]


def num(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("xM%"))


@pytest.mark.slow
def test_bench_table_has_every_column_and_a_same_run_ratio(
    tmp_path: Path,
    tiny_args: Callable[..., list[str]],
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_report, corpora = tok_bench.report, []
    fake_peak = 0.002  # TFLOP/s: the CPU probe's result, fixed, so the MFU formula can be checked
    fake = {(amp, t): fake_peak for t in (1, 2) for amp in ("fp32", "bf16")}
    monkeypatch.setattr(bench, "cpu_peaks", lambda threads: fake)

    def small_report(path: Path) -> str:  # the real tokenizer benchmark, scaled to a test corpus
        corpora.append(path)
        return real_report(path, repeats=1, vocabs=(260, 270, 280))

    monkeypatch.setattr(tok_bench, "report", small_report)
    out_file = tmp_path / "BENCH.md"
    argv = [*tiny_args(), *QUICK, "--compare", "model.attn=naive", "--out", str(out_file)]
    assert bench.main([*argv, "--tokenizer", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert corpora == [corpus] and "ours (pure Python)" in out
    header, rows = table(out)
    assert header == list(report.COLUMNS)
    assert [r[0] for r in rows] == ["base", "model.attn=naive"]
    col = {h: i for i, h in enumerate(header)}
    for r in rows:
        assert all(c for c in r)
        for h in ("train tok/s", "infer tok/s", "gen tok/s (KV cache)", "gen tok/s (no cache)"):
            assert num(r[col[h]]) > 0
        assert num(r[col["peak mem MB"]]) > 10  # the process's peak RSS: torch alone is more
        assert r[col["batch x T"]] == "4x16" and r[col["amp"]] == "fp32"
        # MFU: train tok/s x training FLOPs per token over the (fake) measured peak, in percent
        cfg = load_config(*tiny_args()[:1], tiny_args()[1:])
        flops = TinyGPT(gpt_config(cfg.model, cfg.data.vocab_size)).flops_per_token(16)
        expected = 100 * num(r[col["train tok/s"]]) * flops / (fake_peak * 1e12)
        assert r[col["MFU"]].endswith("%") and num(r[col["MFU"]]) == pytest.approx(
            expected, rel=0.02, abs=0.06
        )
        assert float(r[col["last loss"]]) > 0
    assert [r[col["attn"]] for r in rows] == ["sdpa", "naive"]
    base, naive = rows
    assert base[col["train vs base"]] == "1.00x"
    assert num(base[col["params"]]) == num(naive[col["params"]])  # same model, other attention
    # ratios come from the same medians as the tok/s columns (which are rounded to whole tokens)
    for rate, ratio in (("train tok/s", "train vs base"), ("infer tok/s", "infer vs base")):
        assert num(naive[col[ratio]]) == pytest.approx(
            num(naive[col[rate]]) / num(base[col[rate]]), abs=0.01
        )
    kv = num(base[col["gen tok/s (KV cache)"]]) / num(base[col["gen tok/s (no cache)"]])
    assert num(base[col["KV speedup"]]) == pytest.approx(kv, rel=0.05)

    text = out_file.read_text(encoding="utf-8")
    assert re.search(
        r"^### \d{4}-\d\d-\d\d · CPU .* · torch " + re.escape(torch.__version__), text, re.M
    )
    assert "python -m llm_tiny.bench " in text and "--compare model.attn=naive" in text
    assert table(text)[0] == list(report.COLUMNS)


def test_out_appends_under_a_new_heading(tmp_path: Path) -> None:
    path = tmp_path / "BENCH.md"
    path.write_text("# Benchmarks\n\nkept as is\n", encoding="utf-8")
    report.append_report(path, "first", "python -m llm_tiny.bench a", "| x |\n| - |\n| 1 |")
    report.append_report(path, "second", "python -m llm_tiny.bench b", "| x |\n| - |\n| 2 |")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nkept as is\n")
    assert (
        text.index("### first")
        < text.index("python -m llm_tiny.bench a")
        < text.index("### second")
    )


def test_threads_of_a_variant_apply_while_it_runs(tiny_args: Callable[..., list[str]]) -> None:
    path, *overrides = tiny_args()
    variants = bench.bench_configs(path, overrides, ["train.threads=2"], torch.device("cpu"))
    before = torch.get_num_threads()
    try:
        bench.use_threads(variants[1])
        assert torch.get_num_threads() == 2
        bench.use_threads(variants[0])  # tiny_args pins one thread
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_peak_memory_sees_a_new_allocation_after_a_reset() -> None:
    cpu = torch.device("cpu")
    bench.reset_peak_memory(cpu)
    before = bench.peak_memory_mb(cpu)
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert bench.peak_memory_mb(cpu) >= before + 48
    del big


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-40GB", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.1),
        ("Tesla T4", None),
    ],
)
def test_peak_rate_is_looked_up_by_device_name(
    monkeypatch: pytest.MonkeyPatch, name: str, tflops: float | None
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak.peak_tflops(torch.device("cuda")) == (tflops, name)


def test_mfu_is_model_flops_over_peak() -> None:
    # 1e5 tok/s x 1e6 FLOPs/token = 1e11 FLOP/s = 10% of a 1 TFLOP/s device
    assert peak.mfu(1e5, 1_000_000, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--repeats", "0"], "--repeats >= 1"),
        (["--batch-size", "0"], "--batch-size and --gen-tokens must be >= 1"),
        (["model.n_layr=2"], "unknown config key 'model.n_layr'"),
        (["--compare", "train.amp=fp16", "train.device=cpu"], "train.amp=fp16 needs a CUDA device"),
        (["--config", "missing.yaml"], "config file missing.yaml not found"),
        (["--tokenizer", "nope.txt"], "tokenizer corpus nope.txt not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert bench.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_reports_mfu_and_no_nonfinite_loss(
    tiny_args: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a for a in tiny_args() if not a.startswith("train.device")]
    assert bench.main([*args, "train.device=cuda", *QUICK, "--device", "cuda"]) == 0
    header, rows = table(capsys.readouterr().out)
    col = {h: i for i, h in enumerate(header)}
    assert [r[0] for r in rows] == ["base", *bench.CUDA_COMPARES]
    assert all("NOT FINITE" not in r[col["last loss"]] for r in rows)


@pytest.mark.slow
def test_cpu_mfu_is_a_number_against_the_measured_peak(
    tiny_args: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main([*tiny_args(), *QUICK, "--repeats", "1"]) == 0  # the real probe
    out = capsys.readouterr().out
    header, rows = table(out)
    mfu_cell = rows[0][header.index("MFU")]
    assert mfu_cell.endswith("%") and num(mfu_cell) >= 0
    note = next(ln for ln in out.splitlines() if ln.startswith("- MFU:"))
    fp32, bf16 = (float(g.replace(",", "")) for g in re.findall(r"(?:fp32|bf16) ([\d,]+)", note))
    assert "1 thread(s)" in note and fp32 > 0 and bf16 > 0


def test_mfu_cell_divides_by_the_variant_peak_or_says_n_a() -> None:
    r = report.Result(
        "base",
        "sdpa",
        "fp32",
        1,
        10**6,
        "4x16",
        1e4,
        1e5,
        10.0,
        5.0,
        300.0,
        5.0,
        flops_per_token=6e6,
        peak_tflops=0.1,
    )
    assert report.mfu_cell(r) == "60.0%"  # 1e4 tok/s x 6e6 FLOPs = 6e10 FLOP/s of 1e11
    assert report.mfu_cell(dataclasses.replace(r, peak_tflops=None)) == "n/a"


def test_matmul_probe_times_each_size_and_stops_at_a_slow_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shapes, real_mm = [], torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: shapes.append(a.shape[0]) or real_mm(a, b))
    before = torch.get_num_threads()
    tf = peak.matmul_tflops(torch.float32, 2, sizes=(64, 128), repeats=2)
    assert tf > 0 and shapes == [64] * 3 + [128] * 3  # a warm-up call, then the timed repeats
    assert torch.get_num_threads() == before  # the probe's threads are put back
    shapes.clear()
    peak.matmul_tflops(torch.bfloat16, 1, sizes=(64, 128), repeats=2, slow_s=0.0)
    assert shapes == [64] * 3  # every call "slow": no larger size is tried


def test_the_cpu_note_states_each_measured_peak() -> None:
    measured = {("fp32", 1): 0.0605, ("bf16", 1): 0.41, ("fp32", 2): 0.118, ("bf16", 2): 0.8}
    note = report.cpu_mfu_note(measured)
    assert "1 thread(s): fp32 60, bf16 410; 2 thread(s): fp32 118, bf16 800" in note
    assert "GFLOP/s" in note and "bf16 autocast" in note


def test_a_cpu_variant_divides_by_the_peak_of_its_precision_and_threads() -> None:
    cpu = torch.device("cpu")
    measured = {("fp32", 1): 0.06, ("bf16", 1): 0.4, ("fp32", 2): 0.11, ("bf16", 2): 0.7}
    peak_of, notes = report.device_notes(cpu, None, measured)
    assert [peak_of("fp32", 2), peak_of("bf16", 1), peak_of("bf16", 2)] == [0.11, 0.4, 0.7]
    assert notes[0].startswith("MFU: ") and notes[1].startswith("peak mem: ")
    peak_of, notes = report.device_notes(cpu, 0.5, {})  # --peak-tflops: no probe needed
    assert peak_of("bf16", 1) == 0.5 and "given 0.5 TFLOP/s" in notes[0]
