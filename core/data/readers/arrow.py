"""Arrow files, as the `datasets` library writes them (`Dataset.save_to_disk`: `data-00000-of-00001.arrow`
beside `dataset_info.json` and `state.json`, which readers.METADATA leaves out of a folder), read one record
batch at a time from a memory map, so a large file is never loaded whole.

`datasets` writes the Arrow streaming format; the Arrow file format (random access, what `pyarrow.feather`
and other tools write uncompressed) is read too. Nested columns arrive as Python lists and dicts, so a
`messages` column of role/content structs works as it is. Rows are numbered from 1 ("file:row 1").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.data.readers import textfile
from core.data.readers.reading import FileProblem, Reading, first_line

SUFFIXES = (".arrow",)


def read(path: Path, name: str, reading: Reading) -> Iterator[tuple[str, object]]:
    import pyarrow as pa  # only loaded when there is an Arrow file to read

    textfile.hash_whole(path, reading)  # read through a memory map, not front to back: digest it first
    source = pa.memory_map(str(path))
    try:
        batches = _open(pa, source)
        n = 0
        try:
            for batch in batches:
                for row in batch.to_pylist():
                    n += 1
                    yield f"{name}:row {n}", row
        except (pa.ArrowException, OSError) as e:
            raise FileProblem(f"the Arrow file is damaged after row {n} ({first_line(e)}); save it again") from None
        if n == 0:
            raise FileProblem("the Arrow file has no rows; save it again with the examples in it")
    finally:
        source.close()


def _open(pa, source) -> Iterator:
    """The record batches of a streaming-format file, or of a file-format one."""
    try:
        return iter(pa.ipc.open_stream(source))
    except (pa.ArrowException, OSError):
        source.seek(0)
    try:
        reader = pa.ipc.open_file(source)
    except (pa.ArrowException, OSError) as e:
        raise FileProblem(f"this is not a readable Arrow file ({first_line(e)}); save it again with the datasets "
                          "library (save_to_disk) or use .parquet") from None
    return (reader.get_batch(i) for i in range(reader.num_record_batches))
