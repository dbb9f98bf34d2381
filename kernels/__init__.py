"""Our own Triton/CUDA kernels, one file per op (see shared STYLE.md §8).

Empty until the kernels issue lands: on every device the trainer runs the plain PyTorch path today.
This package depends on nothing in core/, app/ or ui/.
"""
