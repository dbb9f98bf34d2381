"""Scored answers become rated ones (core/data/formats/rated.py): the line between good and bad, for a whole file.

A score alone says nothing about good or bad until it is set against the scale: 3 is poor out of 10 and fair out of
5. So the line is drawn once every row is read: by default in the middle of the scores the file holds,
(lowest + highest) / 2, and answers scored *above* it are rated good, the rest bad (the middle of a scale is not
praise). On 1-5 stars that is 4 and 5 good; on HelpSteer's 0-4 grades, 3 and 4; on a reward in [0, 1], above 0.5.
A person who knows the scale better moves the line (`good_above`: --good-above, or the data page). The line a run
trained with is kept in its config, so its held-out file is rated by the same line, not one of its own.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

from core.data.example import Example


@dataclass(frozen=True)
class Scale:
    low: float  # the lowest score in the file
    high: float
    count: int  # answers with a score
    line: float  # answers scored above it are rated good
    good: int  # how many are above it
    given: bool  # the line was given (good_above) and is not the middle of the scores (which a run keeps as given)

    def summary(self) -> dict:
        return {"low": self.low, "high": self.high, "count": self.count, "good_above": self.line, "good": self.good,
                "given": self.given}


def scale(scores: array, good_above: float | None) -> Scale:
    """The line for these scores (a file's, in order): good_above where given, else the middle of their range."""
    values = np.frombuffer(scores, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    middle = (low + high) / 2
    line = float(good_above) if good_above is not None else middle
    return Scale(low, high, len(values), line, int((values > line).sum()), line != middle)


def rate(example: Example, line: float) -> Example:
    """The example with its score's rating (examples without a score, rated by their label, are as they were)."""
    if example.score is not None:
        example.desirable = example.score > line
    return example


def describe(summary: dict) -> str:
    """'scores from 1 to 5: above 3 good, the rest bad (the middle of the scores)', for inspect, the data page, the
    plan's reasons and the run's log ("Rated by their ...")."""
    low, high, line = (f"{summary[k]:g}" for k in ("low", "high", "good_above"))
    where = "the line given" if summary["given"] else "the middle of the scores"
    return f"scores from {low} to {high}: above {line} good, the rest bad ({where})"
