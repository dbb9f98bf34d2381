"""The planner moves LISA's and full fine-tuning's optimizer state, and any strategy's activations, to RAM by
itself when they do not fit the GPU next to the weights, says why, and counts the time it costs from the link's
bandwidth."""

import json

import pytest

from core import hardware, planner, replanner
from core.errors import BadArgument, KnownError
from core.planner import GIB
from tests.conftest import REPO
from tests.core.test_planner import CPU_ONLY, SMOL

LENGTHS = [64 + (i * 37) % 449 for i in range(1000)]  # the golden table's chat data: up to 512 tokens


def model(name: str) -> dict:
    return json.loads((REPO / "resources" / "models" / f"{name}.json").read_text())


def profile(name: str) -> hardware.HardwareProfile:
    return hardware.load(REPO / "resources" / "hardware" / f"{name}.json")


@pytest.mark.parametrize("gpu", ["gpu-16gb", "gpu-24gb"])
def test_lisa_on_an_8b_model_moves_its_optimizer_state_to_ram(gpu):
    streaming = {"stream_frozen": False} if gpu == "gpu-16gb" else {}  # (the 16 GB card streams: next test)
    plan = planner.make_plan(profile(gpu), model("llama-3.1-8b"), LENGTHS, planner.Wishes(strategy="lisa",
                                                                                          options=streaming))
    assert plan.offload == "optimizer" and plan.options["optimizer_on_host"] is True
    assert plan.options["spill_state"] is False  # spilling changes the trajectory: only when asked for
    assert any("lives in RAM and the CPU updates" in r for r in plan.reasons)
    speed = next(r for r in plan.reasons if r.startswith("Optimizer on the host"))
    assert "GB over PCIe" in speed and "25 GB/s" in speed  # PCIe 4.0 x16 at 80%
    assert not any(k.startswith("optimizer state") for k in plan.memory)
    assert any(k.startswith("optimizer state") and k.endswith("(offloaded)") for k in plan.ram)
    assert "gradients copied to RAM" in plan.ram

    # The same settings with the state kept on the GPU: more GPU memory, less time per step.
    on_gpu = planner.make_plan(profile(gpu), model("llama-3.1-8b"), LENGTHS, planner.Wishes(
        strategy="lisa", micro_batch=plan.micro_batch, checkpointing=plan.gradient_checkpointing,
        options={**plan.options, "optimizer_on_host": False}))
    assert on_gpu.offload == "" and not on_gpu.fits
    assert on_gpu.peak_bytes > plan.peak_bytes + 4 * GIB and on_gpu.step_time_s < plan.step_time_s
    if gpu == "gpu-24gb":
        assert plan.fits  # two of 32 layers train at full precision on a 24 GB card
    else:  # the 16 GB card cannot hold the 15 GiB of bf16 weights themselves: that needs streamed weights
        assert not plan.fits and plan.memory["weights"] > 14 * GIB


def test_lisa_on_an_8b_model_streams_its_frozen_layers_on_a_16gb_card():
    """The 15 GiB of bf16 weights alone fill a 16 GB card: the layers not training stream from RAM, and only the
    two sampled layers, the ring and the embeddings and head stay on the GPU. Slower per step than the 24 GB
    card's plan, which keeps every layer on the GPU."""
    plan = planner.make_plan(profile("gpu-16gb"), model("llama-3.1-8b"), LENGTHS, planner.Wishes(strategy="lisa"))
    assert plan.fits and plan.options["stream_frozen"] is True and plan.offload.startswith("frozen layers")
    layer = plan.memory["weights (2 layers resident, rest streamed)"] / 2
    assert plan.memory["trained layers' weights (2, kept on the device)"] == 2 * layer
    assert plan.ram["offloaded weights"] == pytest.approx(32 * layer, rel=0.01)
    assert any("the layers not training live in RAM" in r for r in plan.reasons)
    roomy = planner.make_plan(profile("gpu-24gb"), model("llama-3.1-8b"), LENGTHS, planner.Wishes(strategy="lisa"))
    assert roomy.options["stream_frozen"] is False and plan.step_time_s > roomy.step_time_s
    # Its 8 micro-batches pass through each layer before the next: the layers cross PCIe once per step, not 8 times.
    assert plan.grad_accum == 8 and plan.options["layer_major"] is True
    assert any(r.startswith("Layer-major steps: the 8 micro-batches") for r in plan.reasons)
    assert any(r.startswith("Streaming: each step brings ") for r in plan.reasons)
    by_micro_batch = planner.make_plan(profile("gpu-16gb"), model("llama-3.1-8b"), LENGTHS, planner.Wishes(
        strategy="lisa", options={"layer_major": False}))
    assert by_micro_batch.options["layer_major"] is False and by_micro_batch.step_time_s > plan.step_time_s
    # Nothing streams on the CPU, where the weights are in RAM already.
    assert planner.make_plan(CPU_ONLY, SMOL, [200] * 50, planner.Wishes(strategy="lisa")).options[
        "stream_frozen"] is False


def test_no_host_optimizer_without_a_gpu_or_where_the_state_fits():
    cpu = planner.make_plan(CPU_ONLY, SMOL, [200] * 50, planner.Wishes(strategy="lisa"))
    assert cpu.options["optimizer_on_host"] is False and cpu.offload == ""
    fits = planner.make_plan(profile("gpu-24gb"), SMOL, [200] * 50, planner.Wishes(strategy="full"))
    assert fits.options["optimizer_on_host"] is False and fits.offload == ""
    galore = planner.make_plan(profile("gpu-24gb"), model("mistral-7b"), LENGTHS,
                               planner.Wishes(strategy="full", options={"optimizer": "galore"}))
    assert galore.options["optimizer_on_host"] is False  # the host optimizer is AdamW's alone


@pytest.mark.parametrize("optimizer", ["adamw8bit", "paged_adamw8bit", "adafactor"])
def test_optimizers_that_update_16_bit_weights_in_place_are_refused_for_a_full_fine_tune_on_a_gpu(optimizer):
    """bitsandbytes' 8-bit AdamW and torch's Adafactor write each update into the weight itself: in bf16 a
    fine-tuning-sized one rounds away (measured: 300 steps at 1e-5 leave a bf16 weight of 0.5 at 0.5). On the CPU
    the weights are fp32 and they train."""
    wish = planner.Wishes(strategy="full", options={"optimizer": optimizer})
    with pytest.raises(BadArgument, match=r"^8-bit AdamW and Adafactor write each update straight into the weights, "
                                          r"and in bf16 .* use optimizer adamw, galore or frugal"):
        planner.make_plan(profile("gpu-24gb"), SMOL, [200] * 50, wish)
    assert planner.make_plan(CPU_ONLY, SMOL, [200] * 50, wish).options["optimizer"] == optimizer


def test_the_trainer_refuses_them_too_for_a_run_config_written_by_hand():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core import strategies

    full = strategies.get("full")
    opts = full.options({"optimizer": "adafactor"})
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=64)).to(torch.bfloat16)

    class Cfg:
        lr, weight_decay = 2e-5, 0.0

    with pytest.raises(KnownError, match="rounds away"):
        full.make_optimizer(full.prepare(model, opts, Cfg), opts, Cfg, "cuda")
    assert full.make_optimizer(full.prepare(model.float(), opts, Cfg), opts, Cfg, "cpu")  # fp32 weights train


def test_out_of_memory_moves_lisas_optimizer_to_ram_without_unfreezing_the_embeddings():
    hw, config = profile("gpu-24gb"), model("llama-3.1-8b")
    crashed = planner.make_plan(hw, config, LENGTHS, planner.Wishes(
        strategy="lisa", micro_batch=1, checkpointing=True,
        options={"embeddings": False, "optimizer_on_host": False, "stream_frozen": False}))
    after = replanner.replan_after_oom(crashed, hw, config, LENGTHS, at_step=10)
    assert after.strategy == "lisa" and after.offload == "optimizer"
    assert after.options["embeddings"] is False and after.effective_batch == crashed.effective_batch
    assert after.micro_batch == 1 and not any("as you asked" in r for r in after.reasons)  # freed memory: not more


def test_spilling_lisas_state_is_planned_with_its_disk_space_and_wear():
    options = {"optimizer_on_host": True, "spill_state": True, "interval": 10}
    plan = planner.make_plan(profile("gpu-24gb"), model("llama-3.1-8b"), LENGTHS,
                             planner.Wishes(strategy="lisa", options=options))
    kept = planner.make_plan(profile("gpu-24gb"), model("llama-3.1-8b"), LENGTHS,
                             planner.Wishes(strategy="lisa", options={**options, "spill_state": False}))
    scratch = plan.disk["spilled optimizer state (scratch file)"]
    assert 80e9 < scratch < 90e9  # 12 bytes for each of the 32 layers' 218M weights
    assert plan.disk["checkpoints"] == kept.disk["checkpoints"] + 2 * scratch  # checkpoints hold spilled state
    wear = next(r for r in plan.reasons if r.startswith("Spilled optimizer state"))
    assert "writes 5.2 GB" in wear and "0.52 GB a step" in wear


def test_activations_on_the_host_leave_one_layer_on_the_gpu_and_cost_pcie_time():
    wishes = dict(strategy="full", micro_batch=4, checkpointing=False)
    hw, config = profile("gpu-24gb"), model("llama-3.2-1b")
    plain = planner.make_plan(hw, config, LENGTHS, planner.Wishes(**wishes, options={"optimizer_on_host": False}))
    host = planner.make_plan(hw, config, LENGTHS, planner.Wishes(**wishes, options={"optimizer_on_host": False,
                                                                                    "activations_on_host": True}))
    assert host.memory["activations (in RAM, one layer back at a time)"] * 10 < plain.memory["activations"]
    # all of them (on a GPU the fused loss saves no log-softmax beside them)
    assert host.ram["activations saved for backward (pinned)"] == plain.memory["activations"]
    assert host.step_time_s > plain.step_time_s and any(r.startswith("Activations in RAM") for r in host.reasons)


def test_long_sequences_keep_their_checkpointed_activations_in_ram_before_leaving_lora():
    """A 1B model on an 8 GB laptop card at 20k tokens: LoRA with checkpointing fits only with the layers' inputs in
    RAM; the planner takes that over QLoRA (the 16-bit base, a small PCIe cost) and says so."""
    n = 20480
    hw, config, lengths = profile("gpu-8gb-laptop"), model("llama-3.2-1b"), [n] * 100
    plan = planner.make_plan(hw, config, lengths, planner.Wishes(seq_len=n))
    assert plan.fits and plan.strategy == "lora" and plan.gradient_checkpointing
    assert plan.options["activations_on_host"] is True and plan.offload == "activations"
    assert any("waits in pinned RAM" in r for r in plan.reasons)
    copies = next(r for r in plan.reasons if r.startswith("Activations in RAM"))
    assert "GB a micro-batch" in copies
    assert plan.ram["activations saved for backward (pinned)"] > 16 * n * 2048 * 2  # every layer's input
    kept = planner.make_plan(hw, config, lengths, planner.Wishes(seq_len=n, strategy="lora", checkpointing=True,
                                                                 options={"activations_on_host": False}))
    assert not kept.fits and kept.peak_bytes > plan.peak_bytes + GIB // 2
    assert kept.step_time_s < plan.step_time_s  # the copies cost time
    dora = next(r for r in plan.rejected if r["strategy"] == "dora")  # what it needs at the least, said as such
    assert not dora["fits"] and "(activations in RAM)" in dora["why"]

    # Never without checkpointing (every saved tensor would cross PCIe), unless asked for.
    no_ckpt = planner.make_plan(hw, config, lengths, planner.Wishes(seq_len=n, strategy="lora",
                                                                    checkpointing=False))
    assert no_ckpt.options["activations_on_host"] is False and not no_ckpt.fits
    # Without a GPU the activations are in RAM already: nothing to move.
    cpu = planner.make_plan(CPU_ONLY, config, lengths, planner.Wishes(seq_len=n))
    assert cpu.options["activations_on_host"] is False


def test_out_of_memory_with_checkpointing_moves_the_activations_before_changing_strategy():
    hw, config, lengths = profile("gpu-8gb-laptop"), model("llama-3.2-1b"), [16384] * 100
    crashed = planner.make_plan(hw, config, lengths, planner.Wishes(seq_len=16384, micro_batch=1, checkpointing=True,
                                                                    options={"activations_on_host": False}))
    after = replanner.replan_after_oom(crashed, hw, config, lengths, at_step=3)
    assert after.strategy == "lora" and after.options["activations_on_host"] is True and after.fits
    assert after.micro_batch == 1 and after.effective_batch == crashed.effective_batch
    # Moving down to QLoRA, the activations return to the GPU where its 4-bit base leaves room.
    moved = planner.make_plan(hw, model("llama-3.2-3b"), [512] * 100, planner.Wishes(seq_len=512))
    assert moved.strategy == "lora" and moved.offload == "activations"
    down = replanner.replan_after_oom(moved, hw, model("llama-3.2-3b"), [512] * 100, at_step=3)
    assert down.strategy == "qlora" and down.options["activations_on_host"] is False and down.fits
