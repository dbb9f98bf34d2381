"""GGUF export written in Python, no compiler: merge, per-architecture tensor maps, our own K-quants, verification.

quants/ turns float tensors into GGUF's block types (the legacy ones through the `gguf` package,
the K-quants with our own code); the rest of the package lays out a model for llama.cpp.
"""
