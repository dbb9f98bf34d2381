"""How many rows to hold out for validation, and which: a fixed seed, and a rule for small sets.

A validation loss needs rows the model never trains on, but a small dataset cannot spare many:
- fewer than 20 rows: none are held out (each row is a twentieth of what the model learns, and a
  loss over one or two rows says little);
- under 200 rows: a tenth, at least 2;
- more: a twentieth, at most 256 (enough for a steady figure; validation runs about ten times a
  run and should cost little next to training).
A share the person chose is used as given, keeping at least one row for training.

A held-out row's copies (rows of the same content: scraped and merged datasets repeat rows) are left out of
training too, so the validation loss measures rows the model never trained on rather than rows it memorized, and
the lowest-validation weights and early stopping it drives are not fooled; unless that would leave under half the
rows to train on (a dataset of a few rows repeated), where the note says the loss reads low instead.

A separate validation set (its own file, or a hub dataset's validation split) holds nothing out: every
training row trains, and validation uses up to AUTO_MAX of its rows (a fixed sample when it has more).
"""

from __future__ import annotations

import random

from core.data.example import Example
from core.data.rows import Rows
from core.words import counted

# What becomes of repeated rows, for `data inspect` and the data page
REPEATED = ("training keeps them, and a held-out row's copies leave training with it, so validation measures rows "
            "the run never saw")
SMALLEST = 20
SMALL = 200
AUTO_MAX = 256


def validation_size(rows: int, fraction: float | None = None) -> tuple[int, str]:
    """(rows to hold out, the sentence saying why) for a dataset of `rows` rows."""
    if fraction is not None:
        held = min(rows - 1, max(1 if fraction > 0 and rows > 1 else 0, round(rows * fraction)))
        return held, f"{held} of {rows} rows held out for validation ({fraction:.0%}, as chosen)"
    if rows < SMALLEST:
        return 0, (f"no validation set: {counted(rows, 'row')} {'is' if rows == 1 else 'are'} too few to spare any "
                   "(hold some out with an explicit share if you want a validation loss)")
    share = 0.1 if rows < SMALL else 0.05
    held = max(2, round(rows * share)) if rows < SMALL else min(AUTO_MAX, round(rows * share))
    return held, f"{held} of {rows} rows held out for validation (the rule for {rows} rows)"


def separate(rows: Rows, name: str, seed: int) -> tuple[list[Example], str]:
    """(validation rows, why) from a separate validation set `rows` called `name`."""
    if len(rows) <= AUTO_MAX:
        return list(rows), f"validation on the {counted(len(rows), 'row')} of {name}; every training row trains"
    chosen = set(random.Random(seed).sample(range(len(rows)), AUTO_MAX))
    return rows.pick(chosen), (f"validation on {AUTO_MAX} of the {len(rows):,} rows of {name} (a fixed sample, so "
                               "each check costs little); every training row trains")


def split(rows: Rows, fraction: float | None, seed: int, hashes=None) -> tuple[Rows, list[Example], str]:
    """(training rows, validation rows, why): the same seed and rows always give the same split. `hashes`: each
    row's content hash (Dataset.row_hashes), to keep a held-out row's copies out of training."""
    held, why = validation_size(len(rows), fraction)
    if held == 0:
        return rows, [], why
    chosen = set(random.Random(seed).sample(range(len(rows)), held))
    copies = _copies(hashes, chosen, len(rows))
    if copies and len(rows) - held - len(copies) < (len(rows) - held) / 2:
        return rows.without(chosen), rows.pick(chosen), (
            f"{why}; {counted(len(copies), 'row')} of training repeat held-out rows, and leaving them out would "
            "leave under half the rows to train on, so they train: the validation loss reads lower than on new rows")
    if copies:
        why += (f"; {counted(len(copies), 'copy', 'copies')} of held-out rows left out of training too, so validation "
                "measures rows the model never trained on")
    return rows.without(chosen | copies), rows.pick(chosen), why


def _copies(hashes, chosen: set[int], count: int) -> set[int]:
    """The rows outside `chosen` whose content hash is a chosen row's."""
    if hashes is None or len(hashes) != count:
        return set()
    import numpy as np

    picked = np.fromiter(sorted(chosen), dtype=np.int64)
    same = np.isin(hashes, hashes[picked])
    same[picked] = False
    return set(np.nonzero(same)[0].tolist())
