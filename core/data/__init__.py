"""Datasets: read a file, detect its schema, report problems by file:line, tokenize for training.

- readers/: one reader per file type (JSONL, JSON, CSV/TSV, Parquet, Arrow, text), streaming, with the
  encoding found (BOM, UTF-16, a stated guess for legacy code pages); a folder mixes them.
- formats/: one file per schema (chat messages, ShareGPT, Alpaca, prompt/completion and aliases,
  text), detected by votes with a confidence, or named by a column mapping.
- dataset.py: the single pass that turns rows into Examples and Problems (file:line, what is wrong);
  rows.py: the examples, kept in memory for small files and read again for big ones; split.py: how
  many rows validation holds out, and which.
- tokenize.py, chat_spans.py: the model's own chat template, loss on the assistant turns; batched.
- token_stats.py, token_report.py: lengths, histogram, trained tokens, a marked preview.
- token_cache.py: tokenized rows cached by content; packing.py: short rows share full sequences.
"""

from core.data.dataset import Dataset, Example, Problem, load

__all__ = ["Dataset", "Example", "Problem", "load"]
