"""Datasets: read a file, detect its schema, report problems by file:line, tokenize for training.

First version: JSON Lines and JSON files in the common schemas (see formats/). The data issue adds
CSV/parquet/text folders, encodings and the full validation set.
"""

from core.data.dataset import Dataset, Example, Problem, load

__all__ = ["Dataset", "Example", "Problem", "load"]
