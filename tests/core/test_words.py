import pytest

from core.data import split
from core.words import counted


@pytest.mark.parametrize("n, noun, plural, text", [
    (1, "step", None, "1 step"), (0, "step", None, "0 steps"), (3, "row", None, "3 rows"),
    (12000, "row", None, "12,000 rows"), (2, "batch", "batches", "2 batches"), (1, "batch", "batches", "1 batch"),
])
def test_counted(n, noun, plural, text):
    assert counted(n, noun, plural) == text


def test_a_lone_row_reads_as_one():
    assert split.validation_size(1)[1].startswith("no validation set: 1 row is too few")
