"""train.time_budget_s: time the first steps, then lay the LR schedule over the steps that fit.

The plan is made once, at a log step (where DDP ranks meet anyway), to the slowest rank's fit; a
resumed run keeps the plan its checkpoint recorded.
"""

from __future__ import annotations

import torch

from llm_tiny.config import TrainCfg
from llm_tiny.runtime import agree

PLAN_FRACTION = 0.05  # of the time budget spent timing steps before laying out the LR schedule
PLAN_MAX_S = 15.0
PLAN_SKIP = 2  # first steps of a process left out of the timing (thread pools, allocator warm-up)
PLAN_MARGIN = 0.97  # plan to finish a little early: the CPU is shared and steps get slower


class Budget:
    """The step count a time budget fits, measured on this process's first steps."""

    def __init__(self, t: TrainCfg, device: torch.device, plan: int | None, step: int) -> None:
        """plan: the one a resumed run's checkpoint recorded (kept only under a time budget)."""
        self.seconds, self.max_steps = t.time_budget_s, t.max_steps
        self.eval_interval, self.log_interval = t.eval_interval, t.log_interval
        self.device = device
        # the step count the schedule was laid over (None: not yet, or no budget)
        self.plan = None if plan is None or self.seconds is None else max(plan, step)
        self.start: tuple[float, int] | None = None  # (seconds, step) where the timing began

    def late(self, now: float) -> bool:
        """Whether `now` (seconds of training) is past the budget."""
        return self.seconds is not None and now >= self.seconds

    def observe(self, step: int, first_step: int, now: float, eval_seconds: float) -> str | None:
        """After each step: once the first steps are timed, set self.plan and return a line that
        says how it was laid out; None on every other step."""
        if self.seconds is None or self.plan is not None:
            return None
        if step == first_step + PLAN_SKIP:
            self.start = (now, step)
            return None
        if self.start is None or step % self.log_interval:
            return None
        dt, steps = now - self.start[0], step - self.start[1]
        ready = steps >= 3 and dt >= min(PLAN_MAX_S, PLAN_FRACTION * self.seconds)
        per_step = dt / max(steps, 1)
        left = PLAN_MARGIN * self.seconds - now - eval_seconds  # the final evaluation
        fit = int(max(0.0, left) / (per_step + eval_seconds / self.eval_interval))
        # with DDP: plan when every rank is ready, to the slowest rank's fit
        votes = agree([float(ready), float(fit)], self.device, "min")
        ready, fit = votes[0] > 0, int(votes[1])
        if not ready:
            return None
        self.plan = max(step, min(self.max_steps, step + fit))
        return (
            f"time budget {self.seconds:g} s: {per_step * 1000:.1f} ms/step, "
            f"{eval_seconds:.2f} s/eval -> schedule over {self.plan} steps"
        )
