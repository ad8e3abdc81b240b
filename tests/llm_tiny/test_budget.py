"""llm_tiny.budget: the schedule's length fitted to train.time_budget_s from the first timed steps."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_tiny.budget import PLAN_MARGIN, PLAN_SKIP, Budget
from llm_tiny.config import TrainCfg

CPU = torch.device("cpu")


def budget(
    seconds: float | None,
    max_steps: int,
    eval_interval: int,
    log_interval: int,
    plan: int | None = None,
) -> Budget:
    t = TrainCfg(
        time_budget_s=seconds,
        max_steps=max_steps,
        eval_interval=eval_interval,
        log_interval=log_interval,
    )
    return Budget(t, CPU, plan, 0)


def run_steps(b: Budget, seconds_per_step: float, steps: int, eval_s: float = 0.0) -> list[str]:
    notes = []
    for step in range(1, steps + 1):
        note = b.observe(step, 0, step * seconds_per_step, eval_s)
        if note is not None:
            notes.append(note)
    return notes


def test_no_budget_never_plans() -> None:
    b = budget(None, 1000, 10, 1)
    assert run_steps(b, 1.0, 50) == [] and b.plan is None and not b.late(1e9)


def test_one_second_steps_in_a_100_second_budget() -> None:
    b = budget(100.0, 1000, 10, 1)
    notes = run_steps(b, 1.0, 50)
    # timing starts after PLAN_SKIP steps and runs 5 s (5% of the budget); at step 7, 90 s are left
    assert b.start == (float(PLAN_SKIP), PLAN_SKIP)
    assert b.plan == 7 + int(PLAN_MARGIN * 100 - 7)
    assert notes == [
        f"time budget 100 s: 1000.0 ms/step, 0.00 s/eval -> schedule over {b.plan} steps"
    ]
    assert not b.late(99.9) and b.late(100.0)


def test_a_resumed_plan_is_kept_and_max_steps_caps_it() -> None:
    kept = budget(100.0, 1000, 10, 1, plan=40)
    assert run_steps(kept, 1.0, 30) == [] and kept.plan == 40
    capped = budget(100.0, 20, 10, 1)
    run_steps(capped, 1.0, 20)
    assert capped.plan == 20


@settings(max_examples=50, deadline=None)
@given(
    per_step=st.floats(0.01, 5.0),
    eval_s=st.floats(0.0, 3.0),
    log_interval=st.integers(1, 7),
)
def test_the_plan_is_the_most_steps_that_fit(
    per_step: float, eval_s: float, log_interval: int
) -> None:
    seconds, interval = 200.0, 10
    b = budget(seconds, 10**6, interval, log_interval)
    for step in range(1, 2000):
        if b.observe(step, 0, step * per_step, eval_s) is not None:
            break
    assert b.plan is not None
    now, cost = step * per_step, per_step + eval_s / interval  # a step and its share of evals
    left = PLAN_MARGIN * seconds - now - eval_s  # the final evaluation comes out first
    assert b.plan >= step
    assert (b.plan - step) * cost <= max(0.0, left) + 1e-9  # what is planned fits
    assert (b.plan - step + 1) * cost > left - 1e-9  # one more step would not
