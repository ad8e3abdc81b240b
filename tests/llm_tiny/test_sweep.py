"""sweep: grid parsing and its errors, point names, random picks, and real tiny sweeps that resume."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_tiny import plot, sweep
from llm_tiny.config import Config, dump_config
from llm_tiny.errors import Diverged, RunError, UserError

SAFE_NAME = re.compile(r"^[A-Za-z0-9._=+~-]+$")
REAL_TRAINER = sweep.train_point
RESULT_COLS = ["point", "train.lr", "val_loss", "val_ppl", "val_bpb", "steps", "seconds", "params"]


# ---- grid parsing ---------------------------------------------------------------------------
def test_grid_items_parse_to_keys_and_values() -> None:
    grid = sweep.parse_grid(["model.n_embd=64,128", "train.lr = 1e-3, 3e-3 ", "model.rope=true"])
    assert grid == {
        "model.n_embd": ["64", "128"],
        "train.lr": ["1e-3", "3e-3"],
        "model.rope": ["true"],
    }


@pytest.mark.parametrize(
    "items, message",
    [
        (["model.n_embd"], "is not key=v1,v2"),
        (["=1,2"], "is not key=v1,v2"),
        (["train.lr=1e-3,,3e-3"], "empty value"),
        (["train.lr="], "empty value"),
        (["train.lr=1e-3", "train.lr=3e-3"], "given twice"),
        (["train.out_dir=a,b"], "cannot be swept"),
    ],
)
def test_bad_grid_syntax_is_a_user_error(items: list[str], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        sweep.parse_grid(items)


@pytest.mark.parametrize(
    "items, message",
    [
        (["model.n_emb=64,128"], "unknown config key 'model.n_emb' (did you mean model.n_embd?)"),
        (["optim.lr=1,2"], "unknown config key"),
        (["model.n_layer=2,two"], "'two' is not an integer"),
        (["model.dropout=0.0,1.5"], "must be in [0, 1)"),
        (["train.lr=1e-3,0.001"], "lists the value 0.001 more than once"),
    ],
)
def test_unknown_keys_and_bad_values_are_caught_before_training(
    items: list[str], message: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        sweep.resolve_grid(sweep.parse_grid(items))


def test_values_are_spelled_canonically_so_names_are_stable() -> None:
    grid = sweep.resolve_grid(sweep.parse_grid(["train.lr=1e-3,3E-3", "model.rope=yes,off"]))
    assert grid == {"train.lr": ["0.001", "0.003"], "model.rope": ["true", "false"]}
    names = [p.name for p in sweep.grid_points(grid)]
    assert names == [
        "lr=0.001__rope=true",
        "lr=0.001__rope=false",
        "lr=0.003__rope=true",
        "lr=0.003__rope=false",
    ]


def test_fixed_keys_stay_out_of_point_names_and_clashing_short_names_use_full_keys() -> None:
    points = sweep.grid_points({"model.n_embd": ["64", "128"], "train.seed": ["1"]})
    assert [p.name for p in points] == ["n_embd=64", "n_embd=128"]
    assert points[1].overrides == ["model.n_embd=128"]
    assert sweep._short_keys(["a.lr", "b.lr", "c.x"]) == {
        "a.lr": "a.lr",
        "b.lr": "b.lr",
        "c.x": "x",
    }
    assert [p.name for p in sweep.grid_points({"train.seed": ["1"]})] == ["base"]


values = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3, unique=True)


@given(
    st.dictionaries(st.from_regex(r"[a-z]{1,3}\.[a-z_]{1,6}", fullmatch=True), values, max_size=4)
)
def test_point_names_are_unique_filesystem_safe_and_stable(grid: dict[str, list[str]]) -> None:
    points = sweep.grid_points(grid)
    names = [p.name for p in points]
    expected = 1
    for v in grid.values():
        expected *= len(v) if len(v) > 1 else 1
    assert len(points) == expected
    assert len(set(names)) == len(names)
    assert all(SAFE_NAME.match(n) and len(n) <= 120 for n in names)
    assert names == [p.name for p in sweep.grid_points(grid)]


@given(st.integers(1, 30), st.integers(1, 40), st.integers(0, 2**32))
def test_random_picks_are_distinct_seeded_and_in_grid_order(total: int, n: int, seed: int) -> None:
    points = [sweep.Point(f"p{i:02d}", ()) for i in range(total)]
    picked = sweep.pick_random(points, n, seed)
    assert len(picked) == min(n, total) and len(set(picked)) == len(picked)
    assert picked == sorted(picked, key=points.index)
    assert picked == sweep.pick_random(points, n, seed)


def test_random_needs_a_positive_count() -> None:
    with pytest.raises(UserError, match="--random must be >= 1"):
        sweep.pick_random([sweep.Point("a", ())], 0, 0)


# ---- real sweeps ----------------------------------------------------------------------------
@pytest.fixture
def config_file(tmp_path: Path, tiny_cfg: Callable[..., Config]) -> Path:
    """The tiny test config (corpus, tokenizer and cache in tmp_path) as one YAML file."""
    path = tmp_path / "sweep.yaml"
    path.write_text(dump_config(tiny_cfg()), encoding="utf-8")
    return path


class CountingTrainer:
    """The real trainer, counting calls; fails on a chosen call to simulate an interrupted sweep."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def __call__(self, cfg: Config) -> dict[str, float]:
        self.calls.append(Path(cfg.train.out_dir or "").name)
        if len(self.calls) == self.fail_on:
            raise KeyboardInterrupt
        return REAL_TRAINER(cfg)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


GRID = ["train.lr=1e-5,3e-3", "train.min_lr=1e-5"]  # 20 steps at 1e-5 barely move: a clear ranking


def test_two_point_sweep_writes_results_names_the_best_and_resumes(
    tmp_path: Path,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trainer = CountingTrainer()
    monkeypatch.setattr(sweep, "train_point", trainer)
    argv = ["--config", str(config_file), "--grid", *GRID, "--root", str(tmp_path), "--name", "s"]
    assert sweep.main(argv) == 0
    sdir = tmp_path / "s"
    rows = read_rows(sdir / "results.csv")
    assert list(rows[0]) == RESULT_COLS
    assert [r["point"] for r in rows] == ["lr=1e-05", "lr=0.003"] == trainer.calls
    for r in rows:
        assert int(r["steps"]) == 20 and int(r["params"]) > 0 and float(r["seconds"]) > 0
        assert float(r["val_ppl"]) == pytest.approx(2.718281828 ** float(r["val_loss"]), rel=1e-4)
        logged = read_rows(sdir / r["point"] / "log.csv")[-1]  # the run's own final evaluation
        assert float(logged["val_loss"]) == pytest.approx(float(r["val_loss"]), rel=1e-5)
    best = min(rows, key=lambda r: float(r["val_ppl"]))
    assert best["point"] == "lr=0.003" and float(best["val_ppl"]) < float(rows[0]["val_ppl"])
    out = capsys.readouterr().out
    assert f"best: lr=0.003 (val ppl {float(best['val_ppl']):.4g})" in out
    table = [ln for ln in out.splitlines() if ln.startswith("|")]
    assert table[2].split("|")[2].strip() == "lr=0.003"  # rank 1 row, sorted by perplexity
    assert (sdir / "sweep.png").stat().st_size > 1000

    # the same command again trains nothing and leaves the finished runs untouched
    logs = {p: (sdir / p / "log.csv").stat().st_mtime_ns for p in trainer.calls}
    trainer.calls.clear()
    assert sweep.main(argv) == 0
    assert trainer.calls == []
    assert {p: (sdir / p / "log.csv").stat().st_mtime_ns for p in logs} == logs
    assert len(read_rows(sdir / "results.csv")) == 2
    assert "2 points, 2 already done" in capsys.readouterr().out


def test_an_interrupted_sweep_reruns_only_the_unfinished_point(
    tmp_path: Path, config_file: Path
) -> None:
    sdir = tmp_path / "s"
    first = CountingTrainer(fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(str(config_file), GRID, sdir, trainer=first)
    assert [r["point"] for r in read_rows(sdir / "results.csv")] == ["lr=1e-05"]
    (sdir / "lr=0.003").mkdir(exist_ok=True)
    (sdir / "lr=0.003" / "log.csv").write_text("half a run\n")  # what a killed run leaves
    done = (sdir / "lr=1e-05" / "ckpt_last.pt").read_bytes()

    second = CountingTrainer()
    rows = sweep.run_sweep(str(config_file), GRID, sdir, trainer=second)
    assert second.calls == ["lr=0.003"]
    assert [r["point"] for r in rows] == ["lr=1e-05", "lr=0.003"]
    assert (sdir / "lr=1e-05" / "ckpt_last.pt").read_bytes() == done
    assert read_rows(sdir / "lr=0.003" / "log.csv")[0]["step"] == "0"  # restarted clean


def test_a_diverged_point_is_a_result_and_the_sweep_goes_on(
    tmp_path: Path,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[float] = []

    def trainer(cfg: Config) -> dict[str, float]:
        calls.append(cfg.train.lr)
        if cfg.train.lr > 0.01:  # what train raises when the loss turns inf/nan
            raise Diverged("non-finite training loss (nan) at step 3; stopped, no checkpoint")
        return REAL_TRAINER(cfg)

    monkeypatch.setattr(sweep, "train_point", trainer)
    argv = [
        str(config_file),
        "--grid",
        "train.lr=3e-3,1.0",
        "--steps",
        "5",
        "--root",
        str(tmp_path),
    ]
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "lr=1.0: diverged (non-finite training loss" in out
    assert "best: lr=0.003" in out
    rows = read_rows(tmp_path / "sweep_sweep" / "results.csv")
    assert [(r["point"], r["val_ppl"], r["steps"]) for r in rows][1] == ("lr=1.0", "inf", "")
    assert (tmp_path / "sweep_sweep" / "sweep.png").stat().st_size > 1000
    fig = plot.draw_sweep(rows)
    labels = [t.get_text().strip() for t in fig.axes[0].texts]
    assert labels[0].endswith("(best)") and labels[1] == "diverged"
    assert calls == [0.003, 1.0]
    assert sweep.main(argv) == 0 and calls == [0.003, 1.0]  # diverging again would teach nothing


def test_an_interrupt_stops_the_sweep(tmp_path: Path, config_file: Path) -> None:
    def trainer(cfg: Config) -> dict[str, float]:
        raise RunError("stopped by SIGTERM at step 3; saved ckpt_last.pt", exit_code=143)

    with pytest.raises(RunError, match="stopped by SIGTERM"):
        sweep.run_sweep(str(config_file), ["train.lr=1e-3,3e-3"], tmp_path, trainer=trainer)
    assert not (tmp_path / "results.csv").exists() or read_rows(tmp_path / "results.csv") == []


def test_a_changed_setting_refuses_the_old_sweep_folder(tmp_path: Path, config_file: Path) -> None:
    trainer = CountingTrainer()
    sweep.run_sweep(str(config_file), ["train.lr=1e-3,3e-3"], tmp_path, steps=2, trainer=trainer)
    with pytest.raises(
        UserError,
        match=r"other settings \(it was run with train.max_steps=2\), whose .* pass --name",
    ):
        sweep.run_sweep(
            str(config_file), ["train.lr=1e-3,3e-3"], tmp_path, steps=3, trainer=trainer
        )
    assert len(trainer.calls) == 2
    # comments and key order in the config file don't matter, only the settings they resolve to
    config_file.write_text(
        "# a comment\n" + config_file.read_text(encoding="utf-8"), encoding="utf-8"
    )
    # a new value for a swept key extends the same sweep: only the new point trains
    sweep.run_sweep(
        str(config_file), ["train.lr=1e-3,3e-3,1e-2"], tmp_path, steps=2, trainer=trainer
    )
    assert trainer.calls == ["lr=0.001", "lr=0.003", "lr=0.01"]


def test_a_bad_combination_fails_before_any_point_trains(tmp_path: Path, config_file: Path) -> None:
    trainer = CountingTrainer()
    with pytest.raises(UserError, match="divisible by model.n_head"):
        sweep.run_sweep(str(config_file), ["model.n_embd=32,33"], tmp_path, trainer=trainer)
    assert trainer.calls == [] and not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--grid", "train.lr"], "is not key=v1,v2"),
        (["--grid", "train.lr=1,2", "--steps", "0"], "--steps must be >= 1"),
        (["--grid", "train.lr=1,2", "--random", "0"], "--random must be >= 1"),
        (["--config", "nope.yaml", "--grid", "train.lr=1,2"], "config file nope.yaml not found"),
        ([], "the following arguments are required: --grid"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sweep.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
