"""GGUF export written in Python, no compiler: merge, per-architecture tensor maps, our own K-quants, verification.

quants/ turns float tensors into GGUF's block types (the legacy ones through the `gguf` package,
the K-quants with our own code); the rest of the package lays out a model for llama.cpp.
"""

# The tensor types a person can pick, lower case (tensor_types.PICKS describes each; kept here so the
# command line can list them without importing numpy and gguf).
QUANT_NAMES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_k", "q5_k", "q6_k", "q4_k_m", "q5_k_m")
