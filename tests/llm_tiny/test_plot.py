"""plot: curves from real training logs, several runs overlaid, the latest run, and bad input."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from llm_tiny import plot, runlog, train
from llm_tiny.metrics import perplexity

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert img.std() > 0.01  # something was drawn, not a blank canvas


def fake_log(run: Path, rows: int = 30, scale: float = 1.0) -> Path:
    """A log.csv written by the real log.csv writer (validation every 10 steps)."""
    log = runlog.writer(run / "log.csv")
    for step in range(0, rows * 5, 5):
        loss = scale * (1.5 + 4.5 * math.exp(-step / 40))
        row: dict[str, object] = {"step": step, "train_loss": loss, "elapsed_s": step * 0.1}
        if step % 10 == 0:
            row.update(val_loss=loss + 0.1, val_ppl=perplexity(loss + 0.1), val_bpb=loss / 2)
        log.log(row)
    return run / "log.csv"


@pytest.fixture
def real_run(tmp_path: Path, tiny_args: Callable[..., list[str]]) -> Path:
    """A run folder made by a real 20-step training run."""
    assert train.main(tiny_args(run="real")) == 0
    return tmp_path / "real"


def test_plot_of_a_real_training_log_is_a_nonempty_png(real_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    assert plot.main([str(real_run), "--out", str(out)]) == 0
    assert_png(out)
    log = plot.read_log(real_run / "log.csv")
    steps, val = log.series("val_loss", "step")
    assert steps == [0.0, 10.0, 20.0] and all(v > 0 for v in val)


def test_tokens_axis_uses_the_runs_batch_and_block_size(real_run: Path, tmp_path: Path) -> None:
    log = plot.read_log(real_run / "log.csv")
    assert log.tokens_per_step == 8 * 16  # train.batch_size x model.block_size of tiny_args
    assert log.x_values("tokens") == [s * 8 * 16 for s in log.cols["step"]]
    out = tmp_path / "tokens.png"
    assert plot.main([str(real_run), "--x", "tokens", "--metric", "bpb", "--out", str(out)]) == 0
    assert_png(out)


def test_two_runs_overlay_with_a_legend_named_after_each_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    logs = [fake_log(root / "small"), fake_log(root / "sweep" / "lr=0.003", scale=0.9)]
    labels, title = plot.run_labels(logs, root)
    assert (labels, title) == (["small", "sweep/lr=0.003"], "run")
    runs = [plot.read_log(p, name) for p, name in zip(logs, labels, strict=True)]
    fig = plot.draw_runs(runs, x="seconds")
    ax_loss, ax_val = fig.axes
    assert [t.get_text() for t in ax_val.get_legend().get_texts()] == ["small", "sweep/lr=0.003"]
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["train", "validation"]
    assert ax_loss.get_xlabel() == "wall-clock seconds" and ax_val.get_ylabel()
    assert ax_loss.get_yscale() == "log"  # loss spans 6 -> 1.5: a log axis shows the late drop
    assert len(ax_loss.get_lines()) == 4  # train + validation per run
    out = tmp_path / "two.png"
    assert plot.main([str(root / "small"), str(logs[1]), "--out", str(out)]) == 0
    assert_png(out)


def test_points_of_one_sweep_are_named_inside_it(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    logs = [fake_log(root / "sweep_tiny" / p) for p in ("lr=0.001", "lr=0.003")]
    assert plot.run_labels(logs, root) == (["lr=0.001", "lr=0.003"], "run, in sweep_tiny/")
    assert plot.run_labels(logs[:1], root) == (["sweep_tiny/lr=0.001"], "run")
    out = tmp_path / "sweep.png"
    assert plot.main([str(p.parent) for p in logs] + ["--root", str(root), "--out", str(out)]) == 0
    assert_png(out)


def bpb_run(run: Path, start: float, finish: float) -> Path:
    """A log whose bits per byte fall fast from `start`, then slowly to `finish`."""
    log = runlog.writer(run / "log.csv")
    for step in range(0, 500, 10):
        bpb = finish + (start - finish) * math.exp(-step / 15) + 0.2 * (1 - step / 500)
        log.log({"step": step, "train_loss": 1.0, "val_loss": 1.0, "val_ppl": 3.0, "val_bpb": bpb})
    return run / "log.csv"


def test_bits_per_byte_stand_alone_on_a_range_that_shows_the_finish(tmp_path: Path) -> None:
    runs = [plot.read_log(bpb_run(tmp_path / n, 8.0, f), n) for n, f in (("a", 2.1), ("b", 2.3))]
    fig = plot.draw_runs(runs, metric="bpb")
    (ax,) = fig.axes  # no loss panel: nats per token of different tokenizers do not compare
    assert "bits per byte" in ax.get_ylabel() and "nats" not in ax.get_ylabel()
    low, high = ax.get_ylim()
    assert low < 2.1 and 2.5 < high < 4.0  # the finish fills the axis; 8.0 is off the top
    ends = sorted(float(t.get_text()) for t in ax.texts)
    assert ends == [pytest.approx(2.1, abs=0.01), pytest.approx(2.3, abs=0.01)]


def test_the_last_perplexity_is_written_at_the_end_of_its_curve(tmp_path: Path) -> None:
    run = plot.read_log(fake_log(tmp_path / "r"))
    fig = plot.draw_runs([run])
    last = [v for v in run.cols["val_ppl"] if math.isfinite(v)][-1]
    assert [t.get_text() for t in fig.axes[1].texts] == [f"{last:.4g}"]


def test_labels_name_the_runs_one_each(tmp_path: Path) -> None:
    logs = [fake_log(tmp_path / n) for n in ("a", "b")]
    out = tmp_path / "p.png"
    assert (
        plot.main([str(p.parent) for p in logs] + ["--labels", "ours,theirs", "--out", str(out)])
        == 0
    )
    assert_png(out)
    assert plot.main([str(p.parent) for p in logs] + ["--labels", "ours", "--out", str(out)]) == 2


def test_narrow_loss_range_keeps_a_linear_axis(tmp_path: Path) -> None:
    log = runlog.writer(tmp_path / "flat" / "log.csv")
    for step in range(0, 40, 10):
        log.log({"step": step, "train_loss": 2.0 + step / 1000, "val_loss": 2.1, "val_ppl": 8.2})
    fig = plot.draw_runs([plot.read_log(tmp_path / "flat" / "log.csv")])
    assert fig.axes[0].get_yscale() == "linear" and fig.axes[1].get_yscale() == "linear"


def test_without_arguments_the_latest_run_is_plotted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "runs"
    old, new = fake_log(root / "old"), fake_log(root / "sweep" / "new")
    os.utime(old, (2_000_000_000, 2_000_000_000))  # the newest mtime, though written first
    os.utime(new, (1_000_000_000, 1_000_000_000))
    assert plot.latest_log(root) == old
    assert plot.main(["--root", str(root)]) == 0
    assert "(old)" in capsys.readouterr().out
    assert_png(root / "plot.png")


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda d: None, ["missing"], "no log.csv"),
        (lambda d: None, ["--root", "{d}/empty"], "no runs with a log.csv"),
        (lambda d: (d / "r").mkdir() or (d / "r" / "log.csv").write_text(""), ["r"], "no rows"),
        (lambda d: fake_log(d / "r"), ["r", "--x", "tokens"], "no config.yaml"),
        (lambda d: fake_log(d / "r"), ["r", "--x", "epochs"], "invalid choice"),
        (
            lambda d: (d / "r").mkdir() or (d / "r" / "log.csv").write_text("a,b\n1,2\n"),
            ["r"],
            "lacks column(s) step, train_loss, val_loss",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setup: Callable[[Path], object],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    assert plot.main([a.format(d=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
