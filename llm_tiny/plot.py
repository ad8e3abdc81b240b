"""Plot training curves: `python -m llm_tiny.plot runs/<run> [runs/<other> ...]` writes runs/plot.png.

Left panel: train and validation loss; right panel: validation perplexity, each run one colour, named
after its folder (or --labels), its last value written at its end. `--metric bpb` draws bits per byte
alone, the one measure comparable across tokenizers, on a range that shows where the runs finish. Without run arguments the most recently written log.csv under
runs/ is plotted (what `make plot` does).
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no GUI backend is ever imported

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import yaml  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator  # noqa: E402

from llm_tiny import runlog  # noqa: E402
from llm_tiny.errors import ArgumentParser, UserError, cli  # noqa: E402

X_AXES = {"step": "step", "tokens": "tokens seen", "seconds": "wall-clock seconds"}
METRICS = {
    "ppl": ("val_ppl", "validation perplexity"),
    "bpb": ("val_bpb", "validation bits per byte"),
}
NEEDED = ("step", "train_loss", "val_loss")


@dataclass
class RunLog:
    """One run's log.csv as columns of floats (nan where a row left a cell empty)."""

    name: str
    path: Path
    cols: dict[str, list[float]] = field(default_factory=dict)
    tokens_per_step: int | None = None

    def series(self, y: str, x: str) -> tuple[list[float], list[float]]:
        """Points (x, y) of the rows where both are finite numbers."""
        xs, ys = self.x_values(x), self.cols.get(y, [])
        pts = [
            (a, b) for a, b in zip(xs, ys, strict=False) if math.isfinite(a) and math.isfinite(b)
        ]
        return [a for a, _ in pts], [b for _, b in pts]

    def x_values(self, x: str) -> list[float]:
        """The x coordinate of every row: step, tokens seen (step x tokens per step) or seconds."""
        if x == "seconds":
            if "elapsed_s" not in self.cols:
                raise UserError(f"{self.path} has no elapsed_s column to plot against seconds")
            return self.cols["elapsed_s"]
        if x == "tokens":
            if self.tokens_per_step is None:
                raise UserError(
                    f"cannot plot {self.name} against tokens: no config.yaml with "
                    "train.batch_size and model.block_size next to its log.csv"
                )
            return [s * self.tokens_per_step for s in self.cols["step"]]
        return self.cols["step"]


def _float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def find_log(run: str | os.PathLike[str]) -> Path:
    """The log.csv of a run folder (or the file itself when given a .csv path)."""
    p = Path(run)
    log = p if p.suffix == ".csv" else p / "log.csv"
    if not log.is_file():
        raise UserError(f"no log.csv at {log}; give a run folder such as runs/tiny")
    return log


def latest_log(root: str | os.PathLike[str] = "runs") -> Path:
    """The most recently modified log.csv under `root` (sweep points included)."""
    logs = list(Path(root).glob("**/log.csv"))
    if not logs:
        raise UserError(f"no runs with a log.csv under {root}/; train one first (make train)")
    return max(logs, key=lambda p: p.stat().st_mtime)


def run_name(log: Path, root: str | os.PathLike[str] = "runs") -> str:
    """A legend label: the run folder relative to `root` (e.g. tiny, or sweep/point), else its name."""
    folder = log.parent.resolve()
    try:
        rel = folder.relative_to(Path(root).resolve())
        return rel.as_posix() if rel.parts else folder.name
    except ValueError:
        return folder.name


def run_labels(
    logs: Sequence[Path], root: str | os.PathLike[str] = "runs"
) -> tuple[list[str], str]:
    """Legend labels and title: runs sharing a parent folder (a sweep's points) are named inside
    it, with the parent as the title; otherwise each is named as run_name does."""
    folders = [log.parent.resolve() for log in logs]
    if len(folders) > 1:
        common = Path(os.path.commonpath(folders))
        if common not in folders and common != Path(root).resolve():
            return [f.relative_to(common).as_posix() for f in folders], (
                f"run, in {run_name(common / 'x', root)}/"
            )
    return [run_name(log, root) for log in logs], "run"


def read_log(log: Path, name: str | None = None) -> RunLog:
    """Read a log.csv (and the run's config.yaml, for tokens per step) into a RunLog."""
    try:
        header, rows = runlog.read_table(log)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {log}: {e}") from None
    if not rows:
        raise UserError(f"{log} has no rows yet; let the run log a few steps first")
    missing = [c for c in NEEDED if c not in header]
    if missing:
        raise UserError(f"{log} lacks column(s) {', '.join(missing)}; is it a training log.csv?")
    cols = {c: [_float(r[c]) for r in rows] for c in header}
    return RunLog(name or log.parent.name, log, cols, _tokens_per_step(log.parent / "config.yaml"))


def _tokens_per_step(cfg_path: Path) -> int | None:
    # batch_size counts sequences per optimizer step over all processes (see llm_tiny.config)
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        return int(cfg["train"]["batch_size"]) * int(cfg["model"]["block_size"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _spread(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return max(finite) / min(finite) if finite else 1.0


def _log_y(ax: plt.Axes, spread: float) -> None:
    """Log y axis with plain numbers (3, 4, 100) instead of 3x10^0 and 10^2."""
    ax.set_yscale("log")
    # decades alone leave one label or none on a short range: label 1-9, or 1-2-5, per decade
    if spread < 15:
        ax.yaxis.set_major_locator(LogLocator(subs=tuple(range(1, 10))))
    elif spread < 1000:
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _finish_range(values: Sequence[float]) -> tuple[float, float] | None:
    """A linear y range that shows where the runs end up, not the first steps' high values:
    capped at four times the median's height above the minimum (None: nothing to cap)."""
    finite = sorted(v for v in values if math.isfinite(v))
    if len(finite) < 4:
        return None
    lo, mid, hi = finite[0], finite[len(finite) // 2], finite[-1]
    cap = lo + 4 * (mid - lo)
    if cap >= hi or mid <= lo:
        return None
    pad = 0.04 * (cap - lo)
    return lo - pad, cap


def _label_last(ax: plt.Axes, xs: list[float], ys: list[float], color: str) -> None:
    """Write a curve's last value beside its end, so the number read is the number reached."""
    ends = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if ends:
        x, y = ends[-1]
        ax.annotate(
            f"{y:.4g}", (x, y), xytext=(4, 0), textcoords="offset points", color=color,
            fontsize=8, va="center",
        )  # fmt: skip


def draw_runs(
    runs: Sequence[RunLog], x: str = "step", metric: str = "ppl", legend_title: str = "run"
) -> Figure:
    """The loss and the validation metric of every run, one colour per run. Bits per byte stand
    alone: loss in nats per token is not comparable across tokenizers, bits per byte are."""
    col, label = METRICS[metric]
    if metric == "bpb":
        fig, ax_val = plt.subplots(figsize=(7, 4.8), constrained_layout=True)
        ax_loss = None
    else:
        fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_loss: list[float] = []
    all_val: list[float] = []
    for i, run in enumerate(runs):
        c = colors[i % len(colors)]
        mx, my = run.series(col, x)
        ax_val.plot(mx, my, color=c, lw=1.8, marker="o", ms=3, label=run.name)
        _label_last(ax_val, mx, my, c)
        all_val += my
        if ax_loss is not None:
            tx, ty = run.series("train_loss", x)
            vx, vy = run.series("val_loss", x)
            ax_loss.plot(tx, ty, color=c, lw=1.0, alpha=0.55, ls="--")
            ax_loss.plot(vx, vy, color=c, lw=1.8, marker="o", ms=3)
            all_loss += ty + vy
    # A log axis only helps when values span a wide range (early loss vs late loss, ppl from
    # hundreds down to a few); over a narrow range it just squeezes the tick labels.
    if metric == "ppl" and _spread(all_val) > 3:
        _log_y(ax_val, _spread(all_val))
    elif (span := _finish_range(all_val)) is not None:
        ax_val.set_ylim(*span)
    ax_val.set(xlabel=X_AXES[x], ylabel=label + " (lower is better)", title=label)
    ax_val.margins(x=0.08)  # room for the end labels
    ax_val.legend(loc="upper right", fontsize=9, title=legend_title, title_fontsize=9)
    axes = [ax_val]
    if ax_loss is not None:
        if _spread(all_loss) > 2:
            _log_y(ax_loss, _spread(all_loss))
        ax_loss.set(xlabel=X_AXES[x], ylabel="cross-entropy loss (nats/token)", title="loss")
        style = [
            Line2D([], [], color="gray", lw=1.0, ls="--", alpha=0.7, label="train"),
            Line2D([], [], color="gray", lw=1.8, marker="o", ms=3, label="validation"),
        ]
        ax_loss.legend(handles=style, loc="upper right", fontsize=9)
        axes.append(ax_loss)
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        if x == "tokens":
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 500k, 1M rather than 1e6 offsets
    return fig


def save(fig: Figure, out: str | os.PathLike[str]) -> Path:
    """Write fig as a PNG (creating the folder) and free it; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_runs(
    runs: Sequence[RunLog],
    out: str | os.PathLike[str],
    x: str = "step",
    metric: str = "ppl",
    legend_title: str = "run",
) -> Path:
    """Draw loss and the validation metric of every run into one PNG at `out`; return its path."""
    return save(draw_runs(runs, x, metric, legend_title), out)


def draw_sweep(rows: Sequence[Mapping[str, str]], title: str = "sweep") -> Figure:
    """Horizontal bars of validation perplexity per sweep point, best first and highlighted;
    a point that diverged (perplexity inf or nan) gets no bar and the label "diverged"."""
    ranked = sorted(rows, key=lambda r: _rank_key(float(r["val_ppl"])))
    names = [r["point"] for r in ranked]
    ppl = [float(r["val_ppl"]) for r in ranked]
    finite = [v for v in ppl if math.isfinite(v)]
    height = 1.6 + 0.42 * len(ranked)
    width = min(16.0, 7.0 + 0.075 * max(len(n) for n in names))  # room for long point names
    fig, ax = plt.subplots(figsize=(width, height), constrained_layout=True)
    colors = ["tab:orange" if i == 0 and finite else "tab:blue" for i in range(len(ranked))]
    widths = [v if math.isfinite(v) else 0.0 for v in ppl]
    bars = ax.barh(range(len(ranked)), widths, color=colors, height=0.65)
    ax.set_yticks(range(len(ranked)), names, fontsize=9)
    ax.invert_yaxis()  # best on top
    for i, (b, v) in enumerate(zip(bars, ppl, strict=True)):
        label = f"{v:.4g}" + ("  (best)" if i == 0 else "") if math.isfinite(v) else "diverged"
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {label}", va="center", fontsize=9)
    ax.set_xlim(0, max(finite, default=1.0) * 1.25)  # leaves room for the value labels
    ax.set(xlabel="validation perplexity (lower is better)", title=title)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _rank_key(ppl: float) -> float:
    return ppl if math.isfinite(ppl) else math.inf  # nan would break the sort: it goes last too


def plot_sweep(
    rows: Sequence[Mapping[str, str]], out: str | os.PathLike[str], title: str = "sweep"
) -> Path:
    """draw_sweep saved as a PNG at `out`; returns its path."""
    return save(draw_sweep(rows, title), out)


@cli
def main(argv: list[str] | None = None) -> int:
    """Plot one or more runs' log.csv into a PNG."""
    ap = ArgumentParser(prog="python -m llm_tiny.plot", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="run folders (or log.csv files); none: the latest run")
    ap.add_argument("--x", choices=sorted(X_AXES), default="step", help="x axis (default: step)")
    ap.add_argument("--metric", choices=sorted(METRICS), default="ppl", help="right panel")
    ap.add_argument("--root", default="runs", help="where runs live (default: runs)")
    ap.add_argument("--out", default=None, help="PNG to write (default: <root>/plot.png)")
    ap.add_argument("--labels", help="comma-separated legend names, one per run (default: folders)")
    args = ap.parse_args(argv)
    logs = [find_log(r) for r in args.runs] if args.runs else [latest_log(args.root)]
    labels, title = run_labels(logs, args.root)
    if args.labels is not None:
        labels, title = args.labels.split(","), "run"
        if len(labels) != len(logs):
            raise UserError(f"--labels names {len(labels)} run(s) for {len(logs)} run(s)")
    runs = [read_log(log, name) for log, name in zip(logs, labels, strict=True)]
    out = Path(args.out or Path(args.root) / "plot.png")
    plot_runs(runs, out, x=args.x, metric=args.metric, legend_title=title)
    print(f"wrote {out} ({', '.join(r.name for r in runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
