"""Training models bigger than the GPU: frozen weights and optimizer state kept in host RAM or on NVMe
and streamed to the GPU as each layer needs them (issue 9; the Fuyou / MemAscend / ZO2 line of work).

- `pool`: one pinned host-memory block, allocated once and handed out in aligned views;
- `disk`: a small thread pool of aligned reads and writes into those views, counting bytes for wear;
- `weight_store`, `layerwise`, `stream`: frozen layer weights in RAM or per-layer NVMe files, loaded
  layer by layer, streamed through a ring of GPU buffers (the `offload` strategy);
- `layer_major`: one optimizer step with every micro-batch through a layer before the next, so each layer
  streams in once per step each way (the `offload` strategy's setting layer_major);
- `host_adam`, `spill`, `activations`: the optimizer's state and updates on the host, a switched-off
  layer's state on NVMe, saved activations in pinned RAM (options of LISA and full);
- `host_plan`: what those cost per step, for the planner.

The strategies (core/strategies/offload.py, and the host-optimizer options of LISA and full) build on
these; the planner chooses them by itself when nothing else fits.
"""
