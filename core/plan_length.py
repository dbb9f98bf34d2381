"""How long a run trains when the person leaves it to the planner: whole passes over the data, sized to
the data, and when to stop early.

- Three passes (epochs) is the common default (transformers' Trainer, LLaMA-Factory): one pass rarely
  settles a new format or voice.
- A small set gets more passes, so that the run makes at least MIN_STEPS optimizer steps (a handful of
  steps moves a model little), up to MAX_EPOCHS: past that it mostly memorizes its rows. Only when there
  are validation rows (held out, or a separate set), because then the weights of the lowest validation
  loss are kept and the run stops once it stops improving; without them nothing would notice the
  memorizing, so it stays at three.
- A large set gets fewer, down to one whole pass, so that a run sees at most MAX_EXAMPLES examples:
  beyond that, repeating rows costs more time than it gives.
- When more than one pass is planned and there are validation rows, the run stops early after STOP_AFTER
  validation checks without a new low (about a third of the ~10 checks a run makes): passes that no
  longer help cost only time, and the lowest point's weights are kept either way.

- With a time limit (the person's), the run is cut to the steps that fit TIME_SHARE of it at the
  estimated step time: validation checks, checkpoints and saving the result take the rest. An estimate
  can be off, so the running trainer measures its own pace and validation checks and cuts itself again
  when they would not fit (`steps_within`, its learning-rate schedule with it), and stops at the limit
  itself as the last resort (core.trainer).

What the person asked for (steps, epochs, stop early) is kept as given. A separate validation set
(core.data.split.separate) counts as validation rows like held-out ones, and is said first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.data import split
from core.words import counted, duration

EPOCHS = 3
MIN_STEPS = 50
MAX_EPOCHS = 10
MAX_EXAMPLES = 30_000
STOP_AFTER = 3
TIME_SHARE = 0.9
CHECKS = 10  # validation checks in a run unless the person sets how often (core.trainer)


@dataclass
class Length:
    epochs: float  # passes over the training rows (as asked, or ours)
    steps: int  # optimizer steps the run makes at most
    stop_early: int  # validation checks without a new low before the run ends; 0: never
    reasons: list[str] = field(default_factory=list)  # the plan's sentences for these
    capped: bool = False  # cut short to end within the person's time limit


def choose(examples: int, validating: int, per_epoch: int, *, epochs: float | None = None, max_steps: int | None = None,
           stop_early: int | None = None, separate: str = "") -> Length:
    """The run's length for `examples` training rows, `validating` rows measuring the validation loss
    (held out of the data, or a separate set), at `per_epoch` optimizer steps a pass; `epochs`, `max_steps`
    and `stop_early` are the person's wishes (None: ours); `separate` names the validation set when it is not
    held out of the data."""
    if max_steps:
        chosen, why = epochs or 1.0, f"{counted(max_steps, 'step')} as you asked."
    elif epochs:
        chosen, why = epochs, f"{counted(epochs, 'epoch')} as you asked: {_steps(epochs, per_epoch)}."
    else:
        chosen, why = _epochs(examples, validating, per_epoch)
    steps = max_steps or max(1, math.ceil(chosen * per_epoch))
    reasons = [f"Length: {why}"]
    if separate:
        reasons.insert(0, f"Validation on {separate} ({counted(validating, 'row')}"
                       + (f", {split.AUTO_MAX} of them sampled" if validating > split.AUTO_MAX else "")
                       + "), so every training row trains.")
    if stop_early is None:
        stop_early = STOP_AFTER if validating and not max_steps and not epochs and chosen > 1 else 0
        if stop_early:
            reasons.append(f"Stops early after {stop_early} validation checks in a row without a new low: by then "
                           "more passes no longer help, and the lowest point's weights are kept either way.")
    elif stop_early:
        reasons.append(f"Stops early after {counted(stop_early, 'validation check')} in a row without a new low, "
                       "as you asked.")
    return Length(chosen, steps, stop_early, reasons)


def within(length: Length, step_s: float, limit_s: float | None, per_epoch: int) -> Length:
    """`length` cut to the steps that end within `limit_s` seconds at `step_s` a step (unchanged without a
    limit, or when it fits), with the sentence that says so."""
    if not limit_s:
        return length
    limit = duration(limit_s)
    if length.steps * step_s <= TIME_SHARE * limit_s:
        length.reasons.append(f"Time: about {duration(length.steps * step_s)}, within the {limit} you allowed; the "
                              "run stops at the limit should it run slower than estimated.")
        return length
    steps = max(1, int(TIME_SHARE * limit_s / step_s))
    epochs = round(steps / per_epoch, 2)
    if step_s > limit_s:
        why = (f"Time: one step takes about {duration(step_s)}, longer than the {limit} you allowed, so the run "
               "makes a single step; allow more time, or a smaller model or shorter sequences, for a real run.")
    else:
        why = (f"Time: {counted(steps, 'step')} ({counted(epochs, 'epoch')}) instead of {length.steps}, to end "
               f"within the {limit} you allowed at about {duration(step_s)} a step (a tenth of it left for "
               "validation and saving); the run stops at the limit should it run slower, keeping what it learned.")
    return Length(epochs, steps, length.stop_early, [*length.reasons, why], capped=True)


def steps_within(left_s: float, step_s: float, check_s: float, every: int | None = None) -> int:
    """How many more steps a running run can make within TIME_SHARE of the `left_s` seconds its limit leaves, at
    `step_s` a step and `check_s` a validation check: one every `every` steps (None: CHECKS in all) and one at
    the end. At least one: the trainer's own stop at the limit is what keeps a hopeless run to it."""
    budget = TIME_SHARE * left_s - check_s
    if every:
        return max(1, int(budget / (step_s + check_s / every)))
    return max(1, int((budget - CHECKS * check_s) / step_s))


def _epochs(examples: int, validating: int, per_epoch: int) -> tuple[float, str]:
    rows = counted(examples, "training row")
    if examples * EPOCHS > MAX_EXAMPLES:
        n = max(1, MAX_EXAMPLES // examples)
        return n, (f"{counted(n, 'epoch')} ({_steps(n, per_epoch)}): {rows} are plenty; a run sees at most about "
                   f"{MAX_EXAMPLES:,} examples, and every row at least once.")
    if EPOCHS * per_epoch >= MIN_STEPS:
        return EPOCHS, (f"{EPOCHS} epochs ({_steps(EPOCHS, per_epoch)}): three passes over {rows}, the common "
                        "default; one pass rarely settles a new format or voice.")
    if not validating:
        return EPOCHS, (f"{EPOCHS} epochs ({_steps(EPOCHS, per_epoch)}): {rows} are few, and with none held out "
                        "for validation nothing would notice the model memorizing them, so no more than three "
                        "passes; more rows teach more.")
    n = min(MAX_EPOCHS, math.ceil(MIN_STEPS / per_epoch))
    return n, (f"{n} epochs ({_steps(n, per_epoch)}): {rows} make {counted(per_epoch, 'step')} a pass, and a model "
               f"needs about {MIN_STEPS} steps to learn from them"
               + (f"; more than {MAX_EPOCHS} passes would mostly memorize them." if n == MAX_EPOCHS else "."))


def _steps(epochs: float, per_epoch: int) -> str:
    return counted(max(1, math.ceil(epochs * per_epoch)), "step")
