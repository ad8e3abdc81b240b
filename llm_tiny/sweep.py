"""Hyperparameter sweep: one full training run per point of a grid, ranked by validation perplexity.

    python -m llm_tiny.sweep --config configs/tiny.yaml \\
        --grid model.n_embd=64,128 train.lr=1e-3,3e-3 --steps 300

Each point trains into runs/<sweep>/<point>/; runs/<sweep>/results.csv gets one row per finished
point as it goes, and runs/<sweep>/sweep.png shows every point's validation perplexity. Running the
same command again skips the finished points, so an interrupted sweep picks up where it stopped. A
grid key given one value is held fixed for every point and stays out of the point names.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import random
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_tiny.config import Config, load_config, set_key
from llm_tiny.errors import ArgumentParser, Diverged, UserError, cli, one_line
from llm_tiny.files import RunLock, atomic_write_text
from llm_tiny.metrics import CSVLogger
from llm_tiny.table import markdown_table

METRIC_COLS = ("val_loss", "val_ppl", "val_bpb", "steps", "seconds", "params")
RESERVED = {"train.out_dir": "the sweep puts every point in its own folder"}


@dataclass(frozen=True)
class Point:
    """One grid point: its folder name and the overrides (swept keys only) that define it."""

    name: str
    values: tuple[tuple[str, str], ...]  # (key, canonical value) in grid order

    @property
    def overrides(self) -> list[str]:
        """The point's values as `key=value` config overrides."""
        return [f"{k}={v}" for k, v in self.values]


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """Parse `key=v1,v2,...` items into {key: [raw values]}; bad syntax is a UserError."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, eq, rest = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"grid item {item!r} is not key=v1,v2,... (e.g. train.lr=1e-3,3e-3)")
        if key in grid:
            raise UserError(f"grid key {key} is given twice; list all its values in one item")
        if key in RESERVED:
            raise UserError(f"{key} cannot be swept: {RESERVED[key]}")
        values = [v.strip() for v in rest.split(",")]
        if any(v == "" for v in values):
            raise UserError(f"grid item {item!r} has an empty value; write key=v1,v2 with no gaps")
        grid[key] = values
    return grid


def _canonical(cfg: Config, key: str) -> str:
    """The parsed value of `key` in cfg, spelled one way (1e-3 and 0.001 are the same point)."""
    sec, name = key.split(".", 1)
    v = getattr(getattr(cfg, sec), name)
    return repr(v) if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v)


def resolve_grid(grid: dict[str, list[str]]) -> dict[str, list[str]]:
    """Check every key and value alone (unknown key / bad value -> UserError) and return the values
    in canonical spelling; values that parse to the same thing are an error. Checks across keys
    (n_embd % n_head, min_lr <= lr) wait for whole points, in run_sweep."""
    out: dict[str, list[str]] = {}
    for key, values in grid.items():
        canon = []
        for v in values:
            cfg = Config()
            set_key(cfg, key, v, source="grid")
            canon.append(_canonical(cfg, key))
        dup = {c for c in canon if canon.count(c) > 1}
        if dup:
            raise UserError(f"grid key {key} lists the value {sorted(dup)[0]} more than once")
        out[key] = canon
    return out


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Name each key by its last part (lr, n_embd) unless two keys would share it."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


def _safe(text: str) -> str:
    """A filesystem-safe spelling of text; anything altered gets a hash so names stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", text)
    if safe != text or len(safe) > 120:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        safe = f"{safe[:100]}~{digest}"
    return safe


def grid_points(grid: dict[str, list[str]]) -> list[Point]:
    """Every point of the grid's swept keys (those with 2+ values), in grid order."""
    swept = {k: v for k, v in grid.items() if len(v) > 1}
    short = _short_keys(list(swept))
    points = []
    for combo in itertools.product(*swept.values()):
        values = tuple(zip(swept, combo, strict=True))
        name = _safe("__".join(f"{short[k]}={v}" for k, v in values)) if values else "base"
        points.append(Point(name, values))
    return points


def pick_random(points: list[Point], n: int, seed: int) -> list[Point]:
    """n distinct points drawn with `seed` (all of them if n >= len), kept in grid order."""
    if n < 1:
        raise UserError(f"--random must be >= 1, got {n}")
    if n >= len(points):
        return points
    keep = sorted(random.Random(seed).sample(range(len(points)), n))
    return [points[i] for i in keep]


def read_results(path: Path) -> list[dict[str, str]]:
    """The rows of a results.csv (empty if there is none yet)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def train_point(cfg: Config) -> dict[str, float]:
    """Train one point in-process; returns the run's final metrics (see llm_tiny.train)."""
    from llm_tiny.train import run_training  # torch loads only once a point actually runs

    return run_training(cfg)


def _manifest(config: str | None, fixed: list[str], swept: list[str]) -> dict[str, object]:
    """What makes points comparable: the resolved settings every point shares, and the swept keys.

    Hashing the resolved config (not the file) lets comments and key order change freely; the
    swept keys and the run folder are left out, since they differ from point to point."""
    shared = load_config(config, fixed).to_dict()
    for key in [*swept, "train.out_dir"]:
        sec, name = key.split(".", 1)
        shared[sec].pop(name)
    digest = hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()
    return {"settings_sha256": digest, "swept_keys": swept, "fixed": fixed}


def _check_manifest(sweep_dir: Path, manifest: dict[str, object]) -> None:
    """A sweep folder only takes points whose shared settings and swept keys match its first run."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    what = {"settings_sha256": "settings", "swept_keys": "swept keys"}
    diff = [name for key, name in what.items() if old.get(key) != manifest[key]]
    if diff:
        raise UserError(
            f"{sweep_dir} holds a sweep with other {' and '.join(diff)} (it was run with "
            f"{' '.join(map(str, old.get('fixed', [])))}), whose results would not compare: "
            f"pass --name NAME to start another sweep, or delete {sweep_dir}"
        )


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def results_table(rows: list[dict[str, str]], keys: Sequence[str]) -> str:
    """Rows sorted by validation perplexity as a markdown table (rank 1 = best)."""
    ranked = sorted(rows, key=lambda r: float(r["val_ppl"]))
    headers = ["rank", "point", *keys, *METRIC_COLS]
    body = []
    for i, r in enumerate(ranked, 1):
        nums = [r[c] if c in ("steps", "params") else _fmt(float(r[c])) for c in METRIC_COLS]
        body.append([i, r["point"], *(r.get(k, "") for k in keys), *nums])
    return markdown_table(headers, body)


def run_sweep(
    config: str | None,
    grid_items: Sequence[str],
    sweep_dir: Path,
    steps: int | None = None,
    random_n: int | None = None,
    seed: int = 0,
    trainer: Callable[[Config], dict[str, float]] | None = None,
) -> list[dict[str, str]]:
    """Run every unfinished point into sweep_dir; return all result rows (finished before or now).

    `trainer` trains one point's config and returns its final metrics (default: train_point).
    """
    trainer = trainer or train_point
    grid = resolve_grid(parse_grid(grid_items))
    fixed = [f"{k}={v[0]}" for k, v in grid.items() if len(v) == 1]
    if steps is not None:
        if steps < 1:
            raise UserError(f"--steps must be >= 1, got {steps}")
        fixed.append(f"train.max_steps={steps}")
    swept = [k for k, v in grid.items() if len(v) > 1]
    points = grid_points(grid)
    if random_n is not None:
        points = pick_random(points, random_n, seed)
    for p in points:  # a bad combination (say n_embd % n_head) fails now, not an hour in
        load_config(config, fixed + p.overrides)

    sweep_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(sweep_dir):
        _check_manifest(sweep_dir, _manifest(config, fixed, swept))
        results_path = sweep_dir / "results.csv"
        done = {r["point"] for r in read_results(results_path)}
        logger = CSVLogger(results_path, ["point", *swept, *METRIC_COLS])
        todo = [p for p in points if p.name not in done]
        print(f"sweep {sweep_dir}: {len(points)} points, {len(points) - len(todo)} already done")
        for i, p in enumerate(todo, 1):
            run_dir = sweep_dir / p.name
            overrides = fixed + p.overrides + [f"train.out_dir={run_dir}"]
            if (run_dir / "ckpt_last.pt").is_file():  # a point interrupted mid-run continues
                overrides.append("train.resume=true")
            elif run_dir.exists():  # stopped before its first checkpoint: nothing to keep
                shutil.rmtree(run_dir)
            print(f"[{i}/{len(todo)}] {p.name}", flush=True)
            t0 = time.perf_counter()
            row: dict[str, object] = {"point": p.name, **dict(p.values)}
            try:
                m = trainer(load_config(config, overrides))
            except Diverged as e:
                # A diverged point is a result (that setting is too aggressive), not a reason
                # to stop the sweep; interrupts and write failures still stop it.
                row.update(val_loss=math.nan, val_ppl=math.inf, val_bpb=math.nan, steps="")
                row.update(seconds=time.perf_counter() - t0, params="")
                logger.log(row)
                print(f"[{i}/{len(todo)}] {p.name}: diverged ({one_line(e)})", flush=True)
                continue
            row.update({k: m[k] for k in ("val_loss", "val_ppl", "val_bpb")})
            row.update(steps=int(m["step"]), seconds=m["elapsed_s"], params=int(m["params"]))
            logger.log(row)
            print(
                f"[{i}/{len(todo)}] {p.name}: val ppl {m['val_ppl']:.4g} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        return read_results(results_path)


@cli
def main(argv: list[str] | None = None) -> int:
    """Run a grid (or random) sweep and print the points ranked by validation perplexity."""
    ap = ArgumentParser(prog="python -m llm_tiny.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=None, help="base config YAML (or --config)")
    ap.add_argument("--config", dest="config_opt", default=None, help="base config YAML")
    ap.add_argument(
        "--grid", nargs="+", required=True, metavar="KEY=V1,V2", help="config keys and values"
    )
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps for every point")
    ap.add_argument("--random", type=int, default=None, metavar="N", help="run N random points")
    ap.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    ap.add_argument("--name", default=None, help="sweep folder name (default: sweep_<config>)")
    ap.add_argument("--root", default="runs", help="where the sweep folder goes (default runs)")
    ap.add_argument("--no-plot", action="store_true", help="skip sweep.png")
    args = ap.parse_args(argv)
    if args.config and args.config_opt:
        raise UserError(f"two configs given: {args.config} and --config {args.config_opt}")
    args.config = args.config or args.config_opt
    stem = Path(args.config).stem if args.config else "default"
    sweep_dir = Path(args.root) / _safe(args.name or f"sweep_{stem}")
    t0 = time.perf_counter()
    rows = run_sweep(args.config, args.grid, sweep_dir, args.steps, args.random, args.seed)
    swept = [k for k in (rows[0] if rows else {}) if k != "point" and k not in METRIC_COLS]
    print()
    print(results_table(rows, swept))
    best = min(rows, key=lambda r: float(r["val_ppl"]))
    if math.isfinite(float(best["val_ppl"])):
        ppl, where = float(best["val_ppl"]), sweep_dir / best["point"]
        print(f"\nbest: {best['point']} (val ppl {ppl:.4g}) in {where}")
    else:
        print("\nbest: none, every point diverged")
    if not args.no_plot:
        from llm_tiny.plot import plot_sweep

        out = plot_sweep(rows, sweep_dir / "sweep.png", title=f"sweep {sweep_dir}")
        print(f"wrote {out}")
    print(f"sweep took {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
