"""Parquet (as on the Hugging Face hub), read one batch at a time so a large file is never loaded whole.

Nested columns arrive as Python lists and dicts, so a `messages` column of role/content structs works as
it is. Rows are numbered from 1 in file order ("file:row 1" is the first row; Parquet has no header).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.data.readers import textfile
from core.data.readers.reading import FileProblem, Reading, first_line

SUFFIXES = (".parquet",)
BATCH_ROWS = 1024  # small enough to bound memory, large enough that per-batch overhead vanishes


def read(path: Path, name: str, reading: Reading) -> Iterator[tuple[str, object]]:
    import pyarrow as pa  # only loaded when there is a parquet file to read
    import pyarrow.parquet as pq

    textfile.hash_whole(path, reading)  # the file is read by offset, not front to back, so digest it first
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise FileProblem(f"this is not a readable Parquet file ({first_line(e)}); export it again or use "
                          ".jsonl") from None
    if pf.metadata.num_rows == 0:
        raise FileProblem("the Parquet file has no rows; export it again with the examples in it")
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                n += 1
                yield f"{name}:row {n}", row
    except (pa.ArrowException, OSError) as e:
        raise FileProblem(f"the Parquet file is damaged after row {n} ({first_line(e)}); export it again") from None
