import pytest

from core.data import split
from core.words import counted, duration, seconds_of


@pytest.mark.parametrize("n, noun, plural, text", [
    (1, "step", None, "1 step"), (0, "step", None, "0 steps"), (3, "row", None, "3 rows"),
    (12000, "row", None, "12,000 rows"), (2, "batch", "batches", "2 batches"), (1, "batch", "batches", "1 batch"),
])
def test_counted(n, noun, plural, text):
    assert counted(n, noun, plural) == text


def test_a_lone_row_reads_as_one():
    assert split.validation_size(1)[1].startswith("no validation set: 1 row is too few")


@pytest.mark.parametrize("text, seconds", [
    ("45m", 2700), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("90s", 90), ("45 min", 2700), ("30", 1800),
    ("2 hours", 7200), ("1 hour 15 minutes", 4500), ("10 sec", 10), ("0", None), ("0m", None), ("", None),
    ("soon", None), ("h", None), ("-5m", None), ("2 days", None),
])
def test_durations_as_people_type_them(text, seconds):
    assert seconds_of(text) == seconds


@pytest.mark.parametrize("seconds, text", [
    (None, "—"), (0.01, "under 0.1 s"), (0.3, "0.3 s"), (4.5, "4.5 s"), (45, "45 s"), (720, "12 min"), (3600, "60 min"), (7200, "2 h"), (12600, "3.5 h"),
    (4 * 86400, "4 days"),
])
def test_durations_in_words(seconds, text):
    assert duration(seconds) == text
