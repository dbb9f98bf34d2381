"""Read a GGUF file's metadata and tensor table: our own reader, for checking what gguf's writer wrote.

gguf's GGUFReader builds an object per value part and takes seconds on a vocabulary of 50,000 tokens
(twenty on Gemma's 256,000); this reads the same layout (GGUF v2/v3: header, key-value list, tensor
table, aligned data) in one pass with struct, so every export can afford to read its file back, and
the check does not trust the library that wrote the file to also read it.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# GGUF value types (gguf's GGUFValueType numbering): fixed-size ones by struct code; 8 string, 9 array.
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (GGUF stores the dims innermost first)
    ggml_type: int
    offset: int  # from the start of the data section


@dataclass
class Contents:
    metadata: dict
    tensors: list[TensorInfo]
    data_start: int
    # tensors of a model split into parts that live in another part: name → (that file, its data start)
    located: dict[str, tuple[Path, int]] = field(default_factory=dict)


def read(path: str | Path, stop_at: str | None = None) -> Contents:
    """The metadata (key → Python value) and the tensor table; `stop_at`: stop after that key."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", m, 0)
        if magic != b"GGUF" or version < 2:
            raise ValueError(f"{path} is not a GGUF v2/v3 file")
        at = [24]

        def take(code: str):
            (v,) = struct.unpack_from("<" + code, m, at[0])
            at[0] += struct.calcsize(code)
            return v

        def string() -> str:
            n = take("Q")
            at[0] += n
            return bytes(m[at[0] - n:at[0]]).decode("utf-8")

        def value(kind: int):
            if kind == _STRING:
                return string()
            if kind == _ARRAY:
                item, count = take("I"), take("Q")
                if item == _STRING:
                    return [string() for _ in range(count)]
                code = _FIXED[item]
                values = struct.unpack_from(f"<{count}{code}", m, at[0])
                at[0] += count * struct.calcsize(code)
                return list(values)
            return take(_FIXED[kind])

        metadata = {}
        for _ in range(n_kv):
            key = string()
            metadata[key] = value(take("I"))
            if key == stop_at:
                return Contents(metadata, [], 0)
        tensors = []
        for _ in range(n_tensors):
            name = string()
            dims = [take("Q") for _ in range(take("I"))]
            tensors.append(TensorInfo(name, tuple(reversed(dims)), take("I"), take("Q")))
        align = metadata.get("general.alignment", 32)
        return Contents(metadata, tensors, -(-at[0] // align) * align)


def read_string(path: str | Path, key: str) -> str | None:
    """One metadata string, reading only as far as it."""
    return read(path, stop_at=key).metadata.get(key)


def tensor_bytes(path: str | Path, contents: Contents, info: TensorInfo, nbytes: int) -> np.ndarray:
    """A tensor's raw bytes (uint8), mapped from the file (or from the part of a split model it lives in)."""
    path, start = contents.located.get(info.name, (path, contents.data_start))
    return np.memmap(path, dtype=np.uint8, mode="r", offset=start + info.offset, shape=(nbytes,))
