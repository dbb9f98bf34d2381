"""Layer-major steps (core/offload/layer_major.py): the offload strategy's `layer_major` gives the losses and
gradients of micro-batch order while each layer streams in once per step each way instead of once per
micro-batch; and the planner counts what it keeps and what it saves."""

from __future__ import annotations

import pytest
import torch

from tests.core.test_offload_stream import STREAM, adapters, session
from tests.core.test_offload_stream import four_layers, one_thread  # noqa: F401  (fixtures: the model, one thread)
from tests.core.test_strategies import examples, run_steps

ACCUMULATION = 3
OFFLOAD = {**STREAM, "quantize": False}


def last_gradients(run) -> dict:
    """name → the gradient each adapter last accumulated, as the optimizer will see it."""
    latest = {}
    for name, p in run.model.named_parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda p, name=name: latest.__setitem__(name, p.grad.clone()))
    return latest


@pytest.mark.parametrize("checkpointing", [False, True], ids=["saved-weights", "checkpointing"])
def test_layer_major_trains_as_micro_batch_order_with_a_kth_of_the_copies(four_layers, tmp_path, checkpointing):
    """Three micro-batches of two rows each, padded to their own lengths, for two steps."""
    data = examples(vocab=1000)
    runs = {order: session(tmp_path, four_layers, "offload", {**OFFLOAD, "layer_major": order == "layer-major"},
                           order, grad_accum=ACCUMULATION, gradient_checkpointing=checkpointing)
            for order in ("micro-batch", "layer-major")}
    latest = {order: last_gradients(run) for order, run in runs.items()}
    layers = runs["layer-major"].model.base_model.model.model.layers
    runs_of_an_mlp = []  # called from inside the layer, so a checkpoint's recompute counts too
    layers[1].mlp.register_forward_pre_hook(lambda *_: runs_of_an_mlp.append(1))
    for step in range(2):
        losses = {order: run_steps(run, data, step + 1) for order, run in runs.items()}
        assert losses["layer-major"] == pytest.approx(losses["micro-batch"], rel=1e-6)
        ours, theirs = latest["layer-major"], latest["micro-batch"]
        assert ours.keys() == theirs.keys() and ours
        for name in ours:
            assert torch.allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-8), name
    ours, theirs = adapters(runs["layer-major"].model), adapters(runs["micro-batch"].model)
    assert all(torch.allclose(ours[name], theirs[name], atol=1e-6) for name in ours)
    # Four layers through two buffers: each pass brings in the two layers that are not there yet (2 and 3 going up,
    # 1 and 0 coming down), once per micro-batch in micro-batch order and once per step layer-major.
    streamers = {order: run.model.tuneforge_offload for order, run in runs.items()}
    assert streamers["micro-batch"].loads == 2 + 2 * ACCUMULATION * 4
    assert streamers["layer-major"].loads == 2 + 2 * 4
    assert streamers["layer-major"].stalls == 0 and streamers["layer-major"].peak_resident == 2
    # Once up and once down per micro-batch, checkpointing or not: the step turns it off for its layers...
    assert len(runs_of_an_mlp) == 2 * 2 * ACCUMULATION
    assert all(layer.gradient_checkpointing == checkpointing for layer in layers)  # ...and back on after


def test_the_recompute_draws_the_dropout_masks_the_forward_drew(four_layers, tmp_path, monkeypatch):
    from core.offload import layer_major

    run = session(tmp_path, four_layers, "offload", {**OFFLOAD, "layer_major": True, "dropout": 0.3}, "dropout")
    data = examples(vocab=1000)
    run_steps(run, data, 1)  # LoRA's B starts at zero: only after a step does dropout change what a layer gives
    outputs, hidden = [], layer_major._hidden
    monkeypatch.setattr(layer_major, "_hidden", lambda output: outputs.append(hidden(output)) or outputs[-1])
    run_steps(run, data, 2)
    up, down = outputs[:8], outputs[8:]  # 4 layers × 2 micro-batches each way; down walks the layers in reverse
    down = [x for i in reversed(range(4)) for x in down[2 * i:2 * i + 2]]
    assert all(torch.equal(a, b) for a, b in zip(up, down, strict=True))


def test_one_micro_batch_runs_in_micro_batch_order(four_layers, tmp_path, monkeypatch):
    from core.offload import layer_major

    run = session(tmp_path, four_layers, "offload", {**OFFLOAD, "layer_major": True}, "one", grad_accum=1)
    monkeypatch.setattr(layer_major, "step", lambda *a, **k: pytest.fail("layer-major with one micro-batch"))
    run_steps(run, examples(vocab=1000), 1)


def test_the_planner_keeps_k_inputs_per_layer_and_streams_k_times_less():
    import json
    from dataclasses import replace
    from pathlib import Path

    from core import memory_model as mm
    from core import speed_model
    from core.hardware import GPU, HardwareProfile
    from core.model_shape import ModelShape

    config = Path(__file__).parents[2] / "resources" / "models" / "llama-3.1-8b.json"
    shape = ModelShape.from_config(json.loads(config.read_text()))
    plain = mm.Setup("offload", 2, 1024, accumulation=4)
    major = replace(plain, layer_major=True)
    one_input = 2 * shape.hidden * plain.tokens  # one layer's input hidden states for one micro-batch, in bf16
    # every layer's input and the last layer's output, for each micro-batch
    assert mm.activation_bytes(shape, major) - mm.activation_bytes(shape, replace(major, accumulation=1)) == \
        (shape.layers + 1) * 3 * one_input
    # Checkpointing in micro-batch order also keeps only the layers' inputs and recomputes, but of one micro-batch.
    checkpointed = mm.estimate(shape, replace(plain, checkpointing=True)).device["activations (checkpointed)"]
    assert mm.estimate(shape, major).device["activations (layer-major)"] - checkpointed == \
        pytest.approx(3 * shape.layers * one_input, rel=0.05)
    assert speed_model.streamed_bytes(shape, major) * 4 == speed_model.streamed_bytes(shape, plain)
    gpu = GPU(index=0, name="RTX 4090", total_bytes=24 << 30, free_bytes=24 << 30, pcie_gen=3, pcie_width=8)
    hw = HardwareProfile(gpus=[gpu], cores_physical=8)
    slow = replace(plain, micro_batch=1, seq_len=128)  # so little compute that even a quarter of the copies is slower
    assert speed_model.micro_batch_seconds(shape, replace(slow, layer_major=True), hw, gpu, 128) == \
        pytest.approx(speed_model.micro_batch_seconds(shape, slow, hw, gpu, 128) / 4)


def test_a_plan_with_layer_major_counts_its_accumulation():
    import json
    from dataclasses import replace
    from pathlib import Path

    from core import hardware, planner

    resources = Path(__file__).parents[2] / "resources"
    config = json.loads((resources / "models" / "llama-3.1-8b.json").read_text())
    hw = hardware.load(resources / "hardware" / "gpu-24gb.json")
    hw = replace(hw, gpus=[replace(hw.gpus[0], pcie_gen=3, pcie_width=4)])  # a slow link: the copies set the pace
    plans = {major: planner.make_plan(hw, config, [1000] * 64, planner.Wishes(
        strategy="offload", micro_batch=1, grad_accum=8, seq_len=1024, checkpointing=True,
        options={"layer_major": major})) for major in (False, True)}
    assert "activations (layer-major)" in plans[True].memory and plans[True].options["layer_major"]
    assert plans[True].step_time_s < plans[False].step_time_s / 3  # 8× fewer copies, until compute sets the pace


@pytest.mark.parametrize("embeddings", [True, False], ids=["embeddings-train", "embeddings-frozen"])
def test_lisa_streamed_layer_major_with_the_host_optimizer_trains_as_plain_lisa(four_layers, tmp_path, embeddings):
    """LISA's frozen layers streamed, layer-major, the optimizer on the host (each layer's gradient is taken once
    its k-th micro-batch has gone down): the losses and weights of LISA with everything resident in micro-batch
    order, whose GPU AdamW the host one matches bit for bit on the CPU. With the embeddings frozen the way down
    stops at the lowest sampled layer: the layers below run only going up."""
    lisa = {"layers": 1, "interval": 1, "embeddings": embeddings}
    over = dict(grad_accum=ACCUMULATION, lr=3e-3, seed=3, max_grad_norm=0.0)  # unclipped: updates as grads arrive
    plain = session(tmp_path, four_layers, "lisa", lisa, "plain", **over)
    ours = session(tmp_path, four_layers, "lisa", {**lisa, "stream_frozen": True, "layer_major": True,
                                                   "optimizer_on_host": True}, "ours", **over)
    runs_of_layer_0 = []
    ours.model.model.layers[0].mlp.register_forward_pre_hook(lambda *_: runs_of_layer_0.append(1))
    data = examples(vocab=1000)
    assert run_steps(ours, data, 1) == pytest.approx(run_steps(plain, data, 1), rel=1e-5)
    assert ours.model.tuneforge_lisa.active == [1]  # (seed 3): layer 0 is below the one that trains
    assert len(runs_of_layer_0) == ACCUMULATION * (2 if embeddings else 1)
    assert run_steps(ours, data, 3) == pytest.approx(run_steps(plain, data, 3), rel=1e-5)
    assert ours.model.tuneforge_offload.stalls == 0
    with ours.strategy.weights_on_host(ours.model):
        mine = dict(ours.model.named_parameters())
        assert all(torch.allclose(mine[n], p, atol=1e-5) for n, p in plain.model.named_parameters())  # (Adam: 1e-6s)
    ours.close()
