"""Training models bigger than the GPU: frozen weights and optimizer state kept in host RAM or on NVMe
and streamed to the GPU as each layer needs them (issue 9; the Fuyou / MemAscend / ZO2 line of work).

- `pool`: one pinned host-memory block, allocated once and handed out in aligned views;
- `disk`: a small thread pool of aligned reads and writes into those views, counting bytes for wear.

The strategies (core/strategies/offload.py, and the host-optimizer option of LISA and full) build on
these; the planner chooses them by itself when nothing else fits.
"""
