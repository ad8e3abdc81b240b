"""Config: YAML + dotted overrides, typed parsing, clear errors, resolved config round trip."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_tiny.config import (
    Config,
    ModelCfg,
    dump_config,
    load_config,
    read_config,
    save_config,
    valid_keys,
)
from llm_tiny.errors import UserError
from llm_tiny.suggest import closest_keys
from model.gpt import GPTConfig

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_yaml_then_overrides_later_wins(tmp_path: Path) -> None:
    p = write(tmp_path, "model:\n  n_layer: 3\ntrain:\n  lr: 3.0e-3\n  batch_size: 16\n")
    cfg = load_config(p, ["train.lr=1e-4", "model.rope=true"])
    assert cfg.model.n_layer == 3
    assert cfg.train.batch_size == 16
    assert cfg.train.lr == 1e-4
    assert cfg.model.rope is True
    assert cfg.train.out_dir == "runs/exp"  # default run folder: runs/<config stem>


def test_yaml_scientific_notation_without_dot_is_a_float(tmp_path: Path) -> None:
    # YAML 1.1 reads 3e-4 as a string; the config parses it to the field's type
    cfg = load_config(write(tmp_path, "train:\n  lr: 3e-4\n  max_steps: 1e3\n"))
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.max_steps == 1000 and isinstance(cfg.train.max_steps, int)


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("Yes", True), ("1", True), ("on", True)]
    + [("false", False), ("NO", False), ("0", False), ("off", False)],
)
def test_bool_words(word: str, value: bool) -> None:
    assert load_config(None, [f"train.compile={word}"]).train.compile is value


@pytest.mark.parametrize("word", ["none", "null", "None", "~", ""])
def test_optional_fields_accept_none(word: str) -> None:
    cfg = load_config(None, ["train.time_budget_s=60", f"train.time_budget_s={word}"])
    assert cfg.train.time_budget_s is None


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("train.lrr", "train.lr"),
        ("train.learning_rate", "train.lr"),  # nanoGPT's name
        ("lr", "train.lr"),  # no section: the key of that name wherever it lives
        ("learning_rate", "train.lr"),
        ("train.max_iters", "train.max_steps"),
        ("eval_iters", "train.eval_batches"),
        ("model.n_layers", "model.n_layer"),
        ("data.vocab", "data.vocab_size"),
        ("train.gradient_accumulation_steps", "train.grad_accum"),
    ],
)
def test_unknown_key_suggests_the_key_meant_first(typed: str, meant: str) -> None:
    with pytest.raises(UserError) as e:
        load_config(None, [f"{typed}=1"])
    msg = str(e.value)
    assert f"unknown config key {typed!r} (did you mean {meant}" in msg
    assert "\n" not in msg and len(msg) < 200  # a short list, not every key
    assert "--print-config" in msg


def test_unknown_key_without_a_likely_meaning_suggests_nothing() -> None:
    with pytest.raises(UserError) as e:
        load_config(None, ["train.xyzzy=1"])
    assert "did you mean" not in str(e.value)


@given(st.sampled_from([k for k in valid_keys() if len(k.split(".")[1]) >= 5]), st.data())
def test_a_key_with_one_letter_dropped_is_found(key: str, data: st.DataObject) -> None:
    sec, name = key.split(".")
    i = data.draw(st.integers(0, len(name) - 1))
    assert key in closest_keys(f"{sec}.{name[:i] + name[i + 1:]}", valid_keys())
    assert closest_keys(key, valid_keys())[0] == key


def test_unknown_section_names_the_sections_or_the_key_meant(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown section 'optim'; valid: model, data, train"):
        load_config(write(tmp_path, "optim:\n  lr: 1\n"))
    with pytest.raises(UserError, match=r"'optim.lr' \(did you mean train.lr\?\)"):
        load_config(None, ["optim.lr=1"])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.lr=fast", "not a number"),
        ("train.max_steps=1.5", "not an integer"),
        ("train.compile=maybe", "true/false"),
        ("model.attn=flash", "choose one of auto, sdpa, naive"),
        ("train.amp=fp8", "choose one of"),
        ("train.optimizer=sgd", "choose one of adamw, muon"),
        ("train.muon_lr=0", "> 0"),
        ("train.batch_size=0", "must be >= 1"),
        ("model.dropout=1.0", "in [0, 1)"),
        ("data.val_frac=0", "in (0, 1)"),
        ("data.vocab_size=100", ">= 256"),
        ("train.lr=nan", "not a number"),
        ("train.lr=-1", "> 0"),
        ("model.n_head=3", "divisible"),
        ("train.min_lr=1", "must not exceed"),
        ("train.threads=0", ">= 1"),
        ("train.lr", "not key=value"),
    ],
)
def test_bad_values_are_one_line_user_errors(override: str, needle: str) -> None:
    with pytest.raises(UserError) as e:
        load_config(None, [override])
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="cannot read config"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(UserError, match="must be a mapping"):
        load_config(write(tmp_path, "model: 3\n"))
    with pytest.raises(UserError, match="bad value for model.n_layer"):
        load_config(write(tmp_path, "model:\n  n_layer: [1, 2]\n"))


def test_empty_yaml_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "", "empty.yaml"))
    assert cfg.model == ModelCfg()
    assert cfg.train.out_dir == "runs/empty"


def test_saved_config_loads_back_equal(tmp_path: Path) -> None:
    cfg = load_config(None, ["train.lr=2e-3", "data.tokenizer=x.json", "train.time_budget_s=5"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again == cfg
    assert dump_config(again) == dump_config(cfg)


def test_model_section_mirrors_gpt_config() -> None:
    # a field added to GPTConfig must be added to ModelCfg too, or no config can set it
    gpt = {f.name: f for f in fields(GPTConfig) if f.name != "vocab_size"}  # vocab: the tokenizer's
    ours = {f.name: f for f in fields(ModelCfg)}
    assert set(gpt) == set(ours)
    for name, f in gpt.items():
        if f.default is not MISSING:  # an optional switch defaults the same way in both
            assert ours[name].default == f.default, name


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.train.out_dir == f"runs/{path.stem}"


@given(st.integers(min_value=1, max_value=10**12))
def test_int_overrides_round_trip(n: int) -> None:
    assert load_config(None, [f"train.max_steps={n}"]).train.max_steps == n


@given(st.floats(min_value=1e-12, max_value=1e3, allow_nan=False, allow_infinity=False))
def test_float_overrides_round_trip(x: float) -> None:
    assert load_config(None, [f"train.lr={x!r}", "train.min_lr=0"]).train.lr == x


def test_defaults_are_valid() -> None:
    assert Config.from_dict({}) == Config()


def test_read_config_names_the_keys_the_file_and_overrides_set(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  n_layer: 2\ntrain:\n  lr: 3e-4\ndata: {}\n")
    cfg, keys = read_config(path, ["train.max_steps=7", " model.rope =true"])
    assert keys == {"model.n_layer", "train.lr", "train.max_steps", "model.rope"}
    assert cfg == load_config(path, ["train.max_steps=7", " model.rope =true"])
    assert read_config(None, [])[1] == frozenset()  # defaults are not "set"
