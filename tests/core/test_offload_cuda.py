"""Issue 9's CUDA paths, on a GPU whenever one is available (skipped elsewhere): the same comparisons the CPU
tests make, but with real side streams, events, pinned memory and device buffers. Each row trains a tiny random
Llama in fp32 on the GPU, with the offloading under test and without it, and wants the same losses (within
what GPU reductions allow) and no layer the prefetch failed to have in place.

`TUNEFORGE_OFFLOAD_TESTS_ON=cpu` runs the table on the CPU instead, which checks the file's own logic
without a GPU (the CPU tests cover the code itself)."""

from __future__ import annotations

import os

import pytest
import torch

from tests.core.test_offload_stream import LORA, STEPS, session
from tests.core.test_offload_stream import four_layers  # noqa: F401  (fixture: the tiny model)
from tests.core.test_strategies import examples, run_steps

DEVICE = os.environ.get("TUNEFORGE_OFFLOAD_TESTS_ON", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")
STREAM = {**LORA, "stream": "always", "quantize": False}
LISA = {"layers": 1, "interval": 1, "embeddings": True}

# row → (strategy and settings under test, the reference's, extra run settings)
ROWS = {
    "offload-ram": (("offload", STREAM), ("lora", LORA), {}),
    "offload-disk-ring3": (("offload", {**STREAM, "where": "disk", "ring": 3}), ("lora", LORA), {}),
    "offload-layer-major": (("offload", {**STREAM, "layer_major": True}), ("lora", LORA), {"grad_accum": 3}),
    "lisa-streamed": (("lisa", {**LISA, "stream_frozen": True}), ("lisa", LISA), {"seed": 3}),
    "lisa-streamed-host-layer-major": (
        ("lisa", {**LISA, "stream_frozen": True, "optimizer_on_host": True, "layer_major": True}), ("lisa", LISA),
        {"seed": 3, "grad_accum": 3, "max_grad_norm": 0.0}),
    "lisa-host-spill-clipped": (("lisa", {**LISA, "optimizer_on_host": True, "spill_state": True}),
                                ("lisa", {**LISA, "optimizer_on_host": True, "spill_state": True}), {}),
    "full-host-activations": (("full", {"optimizer_on_host": True, "activations_on_host": True}), ("full", {}), {}),
    # Each checkpointed layer's input goes out on the side stream and comes back for its recomputation.
    "lora-host-activations-checkpointed": (("lora", {**LORA, "activations_on_host": True}), ("lora", LORA),
                                           {"gradient_checkpointing": True, "grad_accum": 2}),
    # The same with the layers streamed: the streamer hands each layer's input on to RAM (its hooks are innermost).
    "offload-host-activations-checkpointed": (("offload", {**STREAM, "activations_on_host": True}), ("lora", LORA),
                                              {"gradient_checkpointing": True}),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_offloading_on_the_gpu_trains_as_without_it(row, four_layers, tmp_path, monkeypatch):
    from core.offload import activations

    (name, options), (ref_name, ref_options), over = ROWS[row]
    monkeypatch.setattr(activations, "SMALL", 0)  # the tiny model's tensors are small: every saved one moves
    run_over = {"device": DEVICE, "precision": "fp32", "lr": 3e-3, **over}
    ours = session(tmp_path, four_layers, name, options, "ours", **run_over)
    if row == "lisa-host-spill-clipped":  # the reference: the same run on the CPU, where nothing is asynchronous
        run_over["device"] = "cpu"
    theirs = session(tmp_path, four_layers, ref_name, ref_options, "theirs", **run_over)
    data = examples(vocab=1000)
    assert run_steps(ours, data, STEPS) == pytest.approx(run_steps(theirs, data, STEPS), rel=1e-4)
    streamer = getattr(ours.model, "tuneforge_offload", None)
    if streamer is not None:
        assert streamer.stalls == 0 and streamer.loads > 0
        assert ours.placement["frozen weights"] in ("RAM", "NVMe")
        if DEVICE == "cuda":
            assert streamer.store.pinned or streamer.store.where == "disk"
    pool = getattr(ours.optimizer, "pool", None)
    if pool is not None and DEVICE == "cuda":
        assert pool.pinned
    if ours.activations is not None:  # everything saved came back, through a pool sized by the first micro-batch
        assert ours.activations.moved > 0 and ours.activations.pool.used == 0 and ours.activations.overflows == 0
        assert ours.activations.pool.pinned == (DEVICE == "cuda")
        if over.get("gradient_checkpointing"):  # the layers' inputs came back ahead of backward, on the side stream
            assert ours.activations.prefetched > 0
    ours.close()
    theirs.close()


def test_a_checkpoint_taken_on_the_gpu_resumes_exactly(four_layers, tmp_path):
    """LISA with its frozen layers streamed and its state on the host, spilled: stopped and resumed on the GPU."""
    options = {**LISA, "stream_frozen": True, "optimizer_on_host": True, "spill_state": True}
    over = {"device": DEVICE, "precision": "fp32", "lr": 3e-3, "seed": 3}
    data = examples(vocab=1000)
    straight = session(tmp_path, four_layers, "lisa", options, "straight", **over)
    losses = run_steps(straight, data, 4)
    first = session(tmp_path, four_layers, "lisa", options, "stopped", **over)
    head = run_steps(first, data, 2)
    first.save_checkpoint(first.cfg.run_dir, {})
    first.close()
    from core import checkpoint

    second = session(tmp_path, four_layers, "lisa", options, "stopped", **over)
    second.resume(checkpoint.latest(second.cfg.run_dir))
    assert head + run_steps(second, data, 4) == pytest.approx(losses, rel=1e-4)


def test_a_result_answers_streamed_on_the_gpu(four_layers, tmp_path):
    from core import inference

    run = session(tmp_path, four_layers, "lora", LORA, "run", device=DEVICE, precision="fp32")
    run_steps(run, examples(vocab=1000), 1)
    run.save_result(tmp_path / "result")
    whole = inference.trained_model(four_layers, "lora", tmp_path / "result", torch.float32).to(DEVICE).eval()
    streamed = inference.streamed_model(four_layers, "lora", tmp_path / "result", torch.float32, DEVICE).eval()
    x = torch.tensor([examples(vocab=1000)[0].input_ids], device=DEVICE)
    with torch.no_grad():
        assert torch.allclose(streamed(input_ids=x).logits, whole(input_ids=x).logits, atol=1e-4)
