"""Open a text file for streaming: pick its encoding from the first 64 KiB, then decode line by line.

Every byte read passes through the Reading's digest on the way, so the content digest costs no second
pass and no file is ever held whole. The encoding is chosen once, from a sample:

- a byte-order mark settles it (UTF-8, UTF-16, UTF-32);
- NUL bytes without a BOM mean a binary file (UTF-16 without a BOM is too rare to guess at);
- a sample that decodes as UTF-8 is UTF-8;
- anything else is handed to charset_normalizer, and its guess is used only when the decoded text
  looks clean (low "chaos"); the guess is then stated as a warning, since it can be wrong.

A line that fails to decode later in an otherwise good file is reported on its own (with its line
number) instead of failing the whole file.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path

import charset_normalizer

from core.data.readers.reading import FileProblem, Reading

SAMPLE = 64 * 1024
MAX_CHAOS = 0.1  # charset_normalizer's mess ratio; above this the decoded text has visible garbage
BOMS = [  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]
MAGIC = [  # files people pick by mistake, named so the message can say what was found
    (b"PK\x03\x04", "a ZIP archive (an .xlsx or .docx file?)"), (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip-compressed file"), (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
]
BINARY_FIX = "export the data as .jsonl, .csv or .parquet"


def choose_encoding(sample: bytes) -> tuple[str, str | None]:
    """(codec name, warning or None) for a file that starts with `sample`; FileProblem if it is not text."""
    for bom, encoding in BOMS:
        if sample.startswith(bom):
            return encoding, None
    for magic, what in MAGIC:
        if sample.startswith(magic):
            raise FileProblem(f"this is {what}, not text; {BINARY_FIX}")
    if b"\x00" in sample:
        raise FileProblem(f"this is a binary file, not text; {BINARY_FIX}")
    try:  # final=False: the sample may end in the middle of a multi-byte character
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8", None
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(sample).best()
    if best is None or best.chaos > MAX_CHAOS:
        raise FileProblem("this is not UTF-8 text and its encoding cannot be recognised with confidence; "
                          "save the file as UTF-8")
    encoding = codecs.lookup(best.encoding).name
    return encoding, f"decoded as {encoding} (a guess); save as UTF-8 to be sure"


def lines(path: Path, name: str, reading: Reading, empty_hint: str) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text with its line end, decoding problem or None) for each line, lazily."""
    with open(path, "rb") as f:
        sample = f.read(SAMPLE)
    if not sample:
        raise FileProblem(f"the file is empty; {empty_hint}")
    encoding, note = choose_encoding(sample)
    if note:
        reading.warnings.append(f"{name}: {note}")
    # Splitting raw bytes on b"\n" is only right for encodings where "\n" is that byte, and only useful
    # where lines end in "\n" at all (old Mac files end them in "\r" alone).
    by_bytes = _ascii_compatible(encoding) and not (b"\r" in sample and b"\n" not in sample)
    with open(path, "rb", buffering=0) as raw:
        buf = io.BufferedReader(_Hashing(raw, reading), 1 << 16)
        if by_bytes:
            for n, line in enumerate(buf, 1):
                try:
                    yield n, line.decode(encoding), None
                except UnicodeDecodeError as e:
                    yield n, line.decode(encoding, "replace"), (
                        f"not {encoding} text (byte 0x{line[e.start]:02x} at column {e.start + 1}); "
                        "save the file as UTF-8")
        else:
            text = io.TextIOWrapper(buf, encoding=encoding, newline="")  # keep line ends: csv needs them
            n = 0
            try:
                for n, line in enumerate(text, 1):
                    yield n, line, None
            except UnicodeDecodeError:
                raise FileProblem(f"not valid {encoding} text after line {n}; save the file as UTF-8",
                                  line=n + 1) from None
            text.detach()
        drain(buf)


def drain(f) -> None:
    """Read to the end so the digest covers the whole file even when a reader stopped early."""
    while f.read(1 << 20):
        pass


def hash_whole(path: Path, reading: Reading) -> None:
    """Digest a file that is read by a library (parquet) rather than through lines()."""
    with open(path, "rb", buffering=0) as raw:
        drain(io.BufferedReader(_Hashing(raw, reading), 1 << 20))


def _ascii_compatible(encoding: str) -> bool:
    probe = b'\n{}",:ab'  # odd length, so UTF-16/32 fail to decode it
    try:
        return probe.decode(encoding) == probe.decode("ascii")
    except UnicodeDecodeError:
        return False


class _Hashing(io.RawIOBase):
    """A raw file whose every read also feeds the digest and the byte count."""

    def __init__(self, f, reading: Reading):
        self._f, self._reading = f, reading

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self._reading.digest.update(memoryview(b)[:n])
            self._reading.bytes_read += n
        return n
