import json

import pytest

from core import hardware, objectives, planner, replanner
from tests.conftest import REPO

SMOL = json.loads((REPO / "resources" / "models" / "smollm2-135m.json").read_text())
CPU_ONLY = hardware.HardwareProfile(cores_physical=2, ram_total_bytes=24 << 30, ram_available_bytes=20 << 30)


def test_plan_is_deterministic_and_explains_itself():
    lengths = [40, 60, 70, 33]
    a = planner.make_plan(CPU_ONLY, SMOL, lengths)
    b = planner.make_plan(CPU_ONLY, SMOL, lengths)
    assert a == b
    assert a.device == "cpu" and a.precision == "fp32" and a.strategy == "lora"
    assert a.seq_len == 80  # from the data's longest row (70), rounded up to 16
    assert any("CPU" in r for r in a.reasons) and any("Sequence length 80" in r for r in a.reasons)
    assert {r["strategy"] for r in a.rejected} >= {"full", "qlora"}
    assert a.peak_bytes == sum(a.memory.values()) > a.memory["weights"] > 0


@pytest.mark.parametrize("profile, base, offload_why", [
    (CPU_ONLY, "fp32", "on the CPU the weights are in RAM already"),
    (hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json"), "16-bit", "the weights fit on the GPU"),
])
def test_reasons_name_the_precision_and_device_the_plan_has(profile, base, offload_why):
    plan = planner.make_plan(profile, SMOL, [40, 60])
    rejected = {r["strategy"]: r["why"] for r in plan.rejected}
    assert plan.strategy == "lora" and any(f"base stays frozen in {base} " in r for r in plan.reasons), plan.reasons
    assert f"the base in {base}," in rejected["qlora"] and offload_why in rejected["offload"]


def test_wishes_override_and_say_so():
    plan = planner.make_plan(CPU_ONLY, SMOL, [500] * 10, planner.Wishes(seq_len=256, micro_batch=2, lr=1e-3))
    assert (plan.seq_len, plan.micro_batch, plan.lr) == (256, 2, 1e-3)
    assert plan.truncated_rows == 10
    assert any("as you asked" in r and "cuts 10 of 10" in r for r in plan.reasons)


@pytest.mark.parametrize("config, seq_len, refused", [
    (SMOL, SMOL["max_position_embeddings"], False),  # the whole context: fine
    (SMOL, SMOL["max_position_embeddings"] + 1, True),
    ({k: v for k, v in SMOL.items() if k != "max_position_embeddings"}, 100_000, False),  # unknown: not refused
])
def test_a_sequence_length_past_the_models_context_is_refused_in_a_sentence(config, seq_len, refused):
    from core.errors import BadArgument

    wish = planner.Wishes(seq_len=seq_len, micro_batch=1, grad_accum=1)
    if not refused:
        assert planner.make_plan(CPU_ONLY, config, [40] * 4, wish).seq_len == seq_len
        return
    with pytest.raises(BadArgument, match=rf"^Sequence length {seq_len} is longer than this model's context "
                                          rf"\({seq_len - 1} tokens\); ask for at most {seq_len - 1}, "):
        planner.make_plan(CPU_ONLY, config, [40] * 4, wish)


def test_offload_is_planned_and_built():
    plan = planner.make_plan(CPU_ONLY, SMOL, [50], planner.Wishes(strategy="offload"))
    assert plan.strategy == "offload" and plan.strategy_built
    assert not any("not built yet" in w for w in plan.warnings)


@pytest.mark.parametrize("profile,fits", [("gpu-8gb-laptop.json", True), ("gpu-24gb.json", True)])
def test_small_model_fits_consumer_gpus(profile, fits):
    hw = hardware.load(REPO / "resources" / "hardware" / profile)
    plan = planner.make_plan(hw, SMOL, [512] * 100)
    assert (plan.peak_bytes <= plan.memory_limit) == fits
    assert plan.precision == "bf16" and plan.micro_batch >= 1


def test_steps_follow_rows_batch_and_epochs():
    plan = planner.make_plan(CPU_ONLY, SMOL, [50] * 100, planner.Wishes(micro_batch=4, grad_accum=5, epochs=2))
    assert plan.total_steps == 10  # 100 rows / 4 = 25 micro-batches, / 5 = 5 steps, × 2 epochs


def gpu(index, name, gib, free_gib=None):
    return hardware.GPU(index, name, gib << 30, (free_gib or gib) << 30, "8.9", True, pcie_gen=4, pcie_width=16)


def two_gpus():
    return hardware.HardwareProfile(gpus=[gpu(0, "RTX 4060", 8), gpu(1, "RTX 4090", 24, 23)], cores_physical=8,
                                    ram_total_bytes=64 << 30, ram_available_bytes=60 << 30,
                                    disk_free_bytes=500 << 30)


def test_several_gpus_plan_for_the_roomiest_unless_told():
    plan = planner.make_plan(two_gpus(), SMOL, [300] * 100)
    assert (plan.gpu_index, plan.gpu_name) == (1, "RTX 4090")
    assert any("2 GPUs here" in r and "--gpu" in r for r in plan.reasons)
    chosen = planner.make_plan(two_gpus(), SMOL, [300] * 100, planner.Wishes(gpu_index=0))
    assert chosen.gpu_index == 0 and chosen.memory_limit == 8 << 30


def test_memory_cap_limits_the_plan():
    capped = planner.make_plan(two_gpus(), SMOL, [512] * 100, planner.Wishes(memory_cap_bytes=3 << 30))
    assert capped.memory_limit == 3 << 30 and capped.fits
    free = planner.make_plan(two_gpus(), SMOL, [512] * 100)
    assert capped.micro_batch < free.micro_batch or capped.gradient_checkpointing


def test_ladder_goes_checkpointing_then_qlora_then_offload_as_memory_shrinks():
    big = json.loads((REPO / "resources" / "models" / "llama-3.1-8b.json").read_text())
    seen = []
    for gib in (48, 18, 12, 6):
        hw = hardware.HardwareProfile(gpus=[gpu(0, "card", gib)], cores_physical=8, ram_total_bytes=64 << 30,
                                      ram_available_bytes=60 << 30, disk_free_bytes=500 << 30)
        plan = planner.make_plan(hw, big, [400] * 500)
        assert plan.fits, gib
        seen.append((plan.strategy, plan.gradient_checkpointing))
    assert seen == [("lora", False), ("lora", True), ("qlora", True), ("offload", True)]


def test_rejected_alternatives_each_say_why():
    plan = planner.make_plan(hardware.load(REPO / "resources" / "hardware" / "gpu-8gb-laptop.json"),
                             json.loads((REPO / "resources" / "models" / "llama-3.1-8b.json").read_text()),
                             [200] * 100)
    rejected = {r["strategy"]: r for r in plan.rejected}
    assert set(rejected) == {"lora", "dora", "full", "lisa", "offload"}
    assert not rejected["full"]["fits"] and "GiB" in rejected["full"]["why"]
    assert all(r["why"].strip() for r in plan.rejected)
    # A setting valid for the chosen strategy but not for another (qlora's optimizer 'auto'; full has no 'auto')
    # leaves that one judged on its own defaults instead of failing the plan.
    wish = planner.Wishes(strategy="qlora", options={"optimizer": "auto"})
    asked = planner.make_plan(CPU_ONLY, SMOL, [50] * 10, wish)
    assert asked.strategy == "qlora" and {"full", "lisa"} <= {r["strategy"] for r in asked.rejected}


def test_replan_after_oom_halves_the_micro_batch_and_keeps_the_step():
    hw = two_gpus()
    first = planner.make_plan(hw, SMOL, [512] * 64, planner.Wishes(gpu_index=0))
    assert first.micro_batch >= 2
    second = replanner.replan_after_oom(first, hw, SMOL, [512] * 64, at_step=3)
    assert second.micro_batch < first.micro_batch
    assert second.effective_batch == first.effective_batch and second.total_steps == first.total_steps
    assert (second.seq_len, second.lr, second.gpu_index) == (first.seq_len, first.lr, 0)
    # the length the planner chose (64 rows: several passes, stopping early) is the run's, kept as it was
    assert (second.epochs, second.stop_early) == (first.epochs, first.stop_early) and first.stop_early
    assert not any(r.startswith("Length") for r in second.reasons)
    assert second.calibration["factor"] > 1 and "out of memory at step 3" in second.reasons[0]


def test_repeated_ooms_walk_down_the_ladder():
    hw = two_gpus()
    plan = planner.make_plan(hw, SMOL, [512] * 64, planner.Wishes(gpu_index=0))
    steps = [(plan.strategy, plan.gradient_checkpointing, plan.micro_batch)]
    while plan.strategy != "qlora":
        factor = plan.calibration.get("factor", 1.0)
        plan = replanner.replan_after_oom(plan, hw, SMOL, [512] * 64, at_step=0)
        assert plan.calibration["factor"] > factor and plan.effective_batch >= 8
        steps.append((plan.strategy, plan.gradient_checkpointing, plan.micro_batch))
    # micro-batches shrink first, then checkpointing comes on, then the 4-bit base
    no_ckpt = [mb for s, c, mb in steps if (s, c) == ("lora", False)]
    assert no_ckpt == sorted(no_ckpt, reverse=True) and no_ckpt[-1] == 1
    assert ("lora", True) in {(s, c) for s, c, _ in steps}
    assert [s for s, _, _ in steps].index("qlora") == len(steps) - 1


@pytest.mark.parametrize("optimizer", ["adamw", "frugal", "galore"])
def test_a_full_fine_tune_walks_down_the_ladder_with_settings_each_rung_takes(optimizer):
    """Full fine-tuning off the ladder: smaller micro-batches, its own cheaper settings where its optimizer allows
    them (the host AdamW is AdamW's), checkpointing, then QLoRA, which leaves the optimizers only base weights
    take. (Each re-plan here used to end in a traceback past the micro-batches: so did Adafactor's, which a GPU
    plan now refuses for full fine-tuning.)"""
    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    model = json.loads((REPO / "resources" / "models" / "llama-3.2-1b.json").read_text())
    lengths = [512] * 200
    plan = planner.make_plan(hw, model, lengths, planner.Wishes(strategy="full", options={"optimizer": optimizer}))
    seen = [(plan.strategy, plan.gradient_checkpointing)]
    while plan.strategy == "full":
        plan = replanner.replan_after_oom(plan, hw, model, lengths, at_step=2)
        seen.append((plan.strategy, plan.gradient_checkpointing))
        if plan.strategy == "full":
            assert plan.options["optimizer"] == optimizer
            assert plan.options["optimizer_on_host"] is (optimizer == "adamw")  # 12 bytes a weight: on the host
        else:
            assert plan.options["optimizer"] in ("auto", optimizer) and plan.options["optimizer"] != "galore"
        if seen[-2:] == [("full", False), ("full", True)]:
            assert any(r.startswith("Strategy full as before, with gradient checkpointing") for r in plan.reasons)
    assert seen[-1] == ("qlora", True)
    assert ("full", True) in seen or optimizer == "galore"  # (GaLore's state stays on the GPU: past its room)


@pytest.mark.parametrize("busy,others,said", [
    (None, None, None), (5, 0, None),  # an old profile, an idle desktop
    (85, 2, "GPU 0 was in use when profiled (busy 85%, 2 other programs on it)"),
    (3, 1, "GPU 0 was in use when profiled (busy 3%, 1 other program on it)"),
    (40, 0, "GPU 0 was in use when profiled (busy 40%)")])
def test_a_gpu_other_programs_use_is_said_with_the_memory_they_left(busy, others, said):
    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    hw.gpus[0].busy_pct, hw.gpus[0].other_programs = busy, others
    plan = planner.make_plan(hw, SMOL, [300] * 100)
    warned = [w for w in plan.warnings if w.startswith("GPU 0 was in use")]
    if said is None:
        assert not warned
    else:
        assert warned[0].startswith(said) and f"the {hw.gpus[0].free_bytes / 2**30:.1f} GiB that was free" in warned[0]
        assert said.split("(")[1].rstrip(")") in "\n".join(hardware.describe(hw))  # `tuneforge profile` says it too


def test_cpu_plan_has_an_honest_eta():
    plan = planner.make_plan(CPU_ONLY, SMOL, [300] * 200)
    assert plan.step_time_s > 0.5 and plan.total_time_s == pytest.approx(plan.step_time_s * plan.total_steps, rel=0.01)
    assert any("Without a GPU each step takes about" in w for w in plan.warnings)
    assert not any("a time limit" in w for w in plan.warnings)  # about half an hour: nothing more to say
    long = planner.make_plan(CPU_ONLY, SMOL, [300] * 2000)  # over two hours: the time limit is suggested
    said = next(w for w in long.warnings if w.startswith("Without a GPU"))
    assert long.total_time_s > planner.LONG_ON_CPU_S and "a time limit (--time-limit 1h" in said, said
    capped = planner.make_plan(CPU_ONLY, SMOL, [300] * 2000, planner.Wishes(time_limit_s=3600))
    assert not any("a time limit" in w for w in capped.warnings)


def test_calibration_scales_memory_and_time_and_says_so():
    plain = planner.make_plan(two_gpus(), SMOL, [300] * 100)
    scaled = planner.make_plan(two_gpus(), SMOL, [300] * 100,
                               calibration={"factor": 1.5, "time_factor": 2.0, "source": "run r1 on RTX 4090"})
    assert scaled.step_time_s == pytest.approx(2 * plain.step_time_s, rel=1e-3)
    assert scaled.memory["calibration correction"] > 0 and scaled.calibration["time_factor"] == 2.0
    assert sum(1 for r in scaled.reasons if "run r1 on RTX 4090" in r) == 2
    median = planner.make_plan(two_gpus(), SMOL, [300] * 100, calibration={
        "factor": 1.5, "time_factor": 2.0, "source": "run r1 on RTX 4090", "time_source": "the median of 3 runs"})
    assert [r for r in median.reasons if "scaled by" in r] == [
        "Memory estimates scaled by ×1.50, measured on run r1 on RTX 4090.",
        "Time per step scaled by ×2.00, measured on the median of 3 runs."]


def model_config(name: str) -> dict:
    return json.loads((REPO / "resources" / "models" / f"{name}.json").read_text())


@pytest.mark.parametrize("model,embeddings", [("smollm2-135m", True), ("llama-3.2-1b", False)])
def test_lisa_trains_the_embeddings_only_where_they_fit(model, embeddings):
    """On an 8 GB laptop GPU, SmolLM2's embeddings fit beside two sampled layers; Llama-3.2-1B's 262M-weight
    embeddings (with their gradients, fp32 masters and moments) do not, so they stay frozen and LISA still fits."""
    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-8gb-laptop.json")
    plan = planner.make_plan(hw, model_config(model), [400] * 200, planner.Wishes(strategy="lisa"))
    assert plan.fits and plan.options["embeddings"] is embeddings
    assert plan.options["layers"] == 2 and plan.optimizer == "adamw"
    assert any(("all the time" if embeddings else "stay frozen") in r for r in plan.reasons)
    # What the planner counts is what the memory model gives for those settings.
    with_embeddings = planner.make_plan(hw, model_config(model), [400] * 200,
                                        planner.Wishes(strategy="lisa", options={"embeddings": True,
                                                                                 "optimizer_on_host": False}))
    assert with_embeddings.fits is embeddings
    assert with_embeddings.peak_bytes > plan.peak_bytes or embeddings


def test_strategy_settings_flow_into_the_plan_and_are_checked():
    plan = planner.make_plan(CPU_ONLY, SMOL, [50] * 10, planner.Wishes(options={"r": 8, "layers": 3}))
    assert plan.strategy == "lora" and plan.options["r"] == 8 and plan.options["alpha"] == 32
    assert any("layers do not apply to lora" in w for w in plan.warnings)
    small = planner.make_plan(CPU_ONLY, SMOL, [50] * 10, planner.Wishes(strategy="lora", options={"r": 64}))
    assert small.memory["adapter weights (fp32)"] == 8 * plan.memory["adapter weights (fp32)"]
    from core.errors import BadArgument

    with pytest.raises(BadArgument, match="unknown setting"):
        planner.make_plan(CPU_ONLY, SMOL, [50], planner.Wishes(strategy="full", options={"r": 8}))


def test_lisa_out_of_memory_freezes_its_embeddings_before_leaving_lisa():
    """A LISA run with its embeddings trained runs out of memory at micro-batch 1: the re-plan first keeps
    LISA with the embeddings frozen (its own cheaper choice), and only then would it go down the ladder."""
    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-8gb-laptop.json")
    first = planner.make_plan(hw, SMOL, [400] * 200, planner.Wishes(strategy="lisa", micro_batch=1, grad_accum=8))
    assert first.options["embeddings"] is True and first.micro_batch == 1
    again = replanner.replan_after_oom(first, hw, SMOL, [400] * 200, at_step=3)
    assert again.strategy == "lisa" and again.options["embeddings"] is False
    assert again.options["layers"] == first.options["layers"] and again.effective_batch == first.effective_batch
    assert any(r.startswith("The embeddings and output head stay frozen") for r in again.reasons)


def test_the_cpu_asked_for_on_a_gpu_machine_is_said_so():
    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    plan = planner.make_plan(hw, SMOL, [50] * 10, planner.Wishes(device="cpu"))
    assert plan.device == "cpu"
    assert any(r.startswith("Training on the CPU as you asked, though there is a GPU, in fp32") for r in plan.reasons)
    assert not any(r.startswith("No GPU") for r in plan.reasons)
    no_gpu = planner.make_plan(CPU_ONLY, SMOL, [50] * 10)
    assert any(r.startswith("No GPU: training on the CPU in fp32") for r in no_gpu.reasons)


@pytest.mark.parametrize("kernels,fused,said", [
    (None, True, None),
    (["rmsnorm", "rope", "cross_entropy"], True, "Our kernels: only rmsnorm, rope, cross_entropy, as you asked."),
    (["rmsnorm"], False, "Without the fused loss the full logits are built"),
    ([], False, "Our kernels are off, as you asked."),
])
def test_kernels_asked_for_reach_the_plan_and_its_memory(kernels, fused, said):
    """Without our fused loss the logits are built: the plan counts them, says why, and a re-plan keeps the choice."""
    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    wish = dict(micro_batch=4, seq_len=1024, gpu_index=0)
    auto = planner.make_plan(hw, SMOL, [1000] * 64, planner.Wishes(**wish))
    plan = planner.make_plan(hw, SMOL, [1000] * 64, planner.Wishes(**wish, kernels=kernels))
    assert plan.kernels == ("auto" if kernels is None else kernels)
    logits = 4 * 1024 * SMOL["vocab_size"] * 12  # fp32 log-softmax kept plus two vocab-wide gradients
    assert auto.memory["logits and loss"] < logits / 50  # the fused loss's chunk
    assert plan.memory["logits and loss"] == (auto.memory["logits and loss"] if fused else logits)
    assert (said is None) == (not any("Our kernels" in r for r in plan.reasons))
    assert said is None or any(said in r for r in plan.reasons), plan.reasons
    again = replanner.replan_after_oom(plan, hw, SMOL, [1000] * 64, at_step=2)
    assert again.kernels == plan.kernels


@pytest.mark.parametrize("failed, kept, smaller", [
    (["rmsnorm"], ["swiglu", "rope", "cross_entropy", "lora"], False),  # costs no memory: the same settings
    (["cross_entropy"], ["rmsnorm", "swiglu", "rope", "lora"], True),  # the full logits now count: smaller pieces
    (["rope", "lora"], ["rmsnorm", "swiglu", "cross_entropy"], False),
])
def test_a_failed_kernel_is_planned_out_keeping_what_still_fits(failed, kept, smaller):
    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    wish = planner.Wishes(seq_len=1024, gpu_index=0, memory_cap_bytes=6 << 30)
    first = planner.make_plan(hw, SMOL, [1000] * 64, wish)
    assert first.kernels == "auto" and first.micro_batch >= 2
    again = replanner.replan_without_kernels(first, hw, SMOL, [1000] * 64, 5, failed, "OutOfResources: shared memory",
                                             wish)
    assert again.kernels == kept and again.fits
    assert again.reasons[0].startswith(f"Re-planned at step 5: our {', '.join(failed)} kernel")
    assert "(OutOfResources: shared memory)" in again.reasons[0]
    said = f"Our kernels: only {', '.join(kept)}, since {', '.join(failed)} failed on this GPU."
    assert any(r.startswith(said) for r in again.reasons), again.reasons
    assert (again.strategy, again.seq_len, again.effective_batch, again.total_steps) == (
        first.strategy, first.seq_len, first.effective_batch, first.total_steps)
    assert not again.calibration  # nothing ran out: the estimates are as they were
    if smaller:
        assert again.micro_batch < first.micro_batch
        assert again.memory["logits and loss"] == again.micro_batch * 1024 * SMOL["vocab_size"] * 12
    else:
        assert again.micro_batch == first.micro_batch and again.memory == first.memory
        assert "The other settings stay as they were: they still fit." in again.reasons


def test_a_gpu_older_than_triton_supports_counts_the_logits_and_says_why():
    pascal = hardware.HardwareProfile(gpus=[hardware.GPU(0, "NVIDIA GeForce GTX 1080 Ti", 11 << 30, 11 << 30,
                                                         compute_capability="6.1")],
                                      cores_physical=8, ram_total_bytes=32 << 30, ram_available_bytes=28 << 30)
    plan = planner.make_plan(pascal, SMOL, [1000] * 64, planner.Wishes(micro_batch=4, seq_len=1024))
    assert plan.device == "cuda" and plan.memory["logits and loss"] == 4 * 1024 * SMOL["vocab_size"] * 12
    assert any("compute capability 6.1" in r and "logits" in r for r in plan.reasons), plan.reasons


def test_the_lowest_validations_weights_go_when_only_their_copy_lacks_disk_room():
    roomy = planner.make_plan(CPU_ONLY, SMOL, [300] * 100)
    best = roomy.disk["weights of the lowest validation loss"]
    assert roomy.keep_best and best == roomy.disk["result"] > 0
    tight = hardware.HardwareProfile(cores_physical=2, ram_total_bytes=24 << 30, ram_available_bytes=20 << 30,
                                     disk_free_bytes=sum(roomy.disk.values()) - best // 2)
    plan = planner.make_plan(tight, SMOL, [300] * 100)
    assert (plan.strategy, plan.keep_best, plan.fits, plan.warnings[1:]) == ("lora", False, True, [])
    assert "weights of the lowest validation loss" not in plan.disk
    assert any("are not kept: their copy" in r for r in plan.reasons), plan.reasons
    asked = planner.make_plan(tight, SMOL, [300] * 100, planner.Wishes(keep_best=True))  # kept, and warned
    assert asked.keep_best and any("more than the" in w for w in asked.warnings)
    dropped = planner.make_plan(CPU_ONLY, SMOL, [300] * 100, planner.Wishes(keep_best=False))
    assert not dropped.keep_best and any("not kept, as you asked" in r for r in dropped.reasons)
    again = replanner.replan_after_oom(dropped, CPU_ONLY, SMOL, [300] * 100, at_step=1)
    assert not again.keep_best and "weights of the lowest validation loss" not in again.disk


def test_preference_pairs_are_planned_for_orpo_with_two_sequences_an_example():
    from core.errors import BadArgument

    gpu = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    fixed = dict(micro_batch=4, grad_accum=1, strategy="lora")
    sft = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(**fixed))
    orpo = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(pairs=True, **fixed))
    assert (sft.objective, orpo.objective, sft.packing, orpo.packing) == ("sft", "orpo", True, False)
    assert orpo.reasons[0].startswith("Objective: ORPO, as the rows are preference pairs (strength 0.1): the chosen "
                                      "answers")
    # Twice the sequences; on a GPU each answer token's loss comes from the fused kernel, as the supervised loss does
    assert orpo.memory["activations"] == 2 * sft.memory["activations"]
    assert sft.memory["logits and loss"] < orpo.memory["logits and loss"] <= 2 * sft.memory["logits and loss"]
    plain = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(pairs=True, kernels=[], **fixed))
    assert plain.memory["logits and loss"] > 10 * orpo.memory["logits and loss"]  # the kernels off: all the logits
    assert orpo.step_time_s > sft.step_time_s
    chosen_only = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(pairs=True, objective="sft", **fixed))
    assert chosen_only.objective == "sft" and "the rejected ones are not used" in chosen_only.reasons[0]
    with pytest.raises(BadArgument, match="^ORPO learns from preference pairs .* train it with --objective sft.$"):
        planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective="orpo"))
    again = replanner.replan_after_oom(orpo, gpu, SMOL, [300] * 200, at_step=3)  # the run goes on learning the same
    assert (again.objective, again.packing) == ("orpo", False)


@pytest.mark.parametrize("name", ["dpo", "simpo"])
def test_dpo_and_simpo_are_planned_when_asked_and_dpo_counts_its_reference_pass(name):
    from core.errors import BadArgument

    gpu = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    fixed = dict(micro_batch=4, grad_accum=1, strategy="lora", pairs=True)
    orpo = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(**fixed))
    plan = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective=name, **fixed))
    label = {"dpo": "DPO", "simpo": "SimPO"}[name]
    assert (plan.objective, plan.packing) == (name, False)
    assert plan.reasons[0].startswith(f"Objective: {label} as you asked (strength {objectives.get(name).BETA:g}): "
                                      "the model learns to prefer the chosen")
    assert plan.memory == orpo.memory and plan.step_time_s == orpo.step_time_s  # two sequences an example, logits
    assert (orpo.lr, plan.lr) == (2e-4, pytest.approx(2e-5))  # a tenth of LoRA's supervised rate, and why
    assert any(r.startswith(f"Learning rate 2e-05: 0.1× the supervised one, as {label} learns no answers")
               for r in plan.reasons)
    asked = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective=name, lr=1e-4, **fixed))
    assert asked.lr == 1e-4 and not any(r.startswith("Learning rate") for r in asked.reasons)
    steps = plan.step_time_s * plan.total_steps
    if name == "dpo":  # a forward pass over every pair before step 1: half an epoch's steps
        assert plan.total_time_s == pytest.approx(steps + plan.epoch_time_s / 2, abs=0.2)
        assert any(r.startswith("The starting model's log-probabilities of the pairs the run trains on, worked out "
                                "before step 1: about ") for r in plan.reasons)
        short = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective=name, max_steps=2, **fixed))
        assert short.total_time_s == pytest.approx(short.step_time_s * 2 * 1.5, abs=0.1)  # 2 steps' pairs alone
    else:
        assert plan.total_time_s == pytest.approx(steps, abs=0.1)
    with pytest.raises(BadArgument, match=f"^{label} learns from preference pairs .* train it with --objective sft.$"):
        planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective=name))
    strong = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective=name, beta=0.5, **fixed))
    assert strong.beta == 0.5 and "(strength 0.5 as you asked)" in strong.reasons[0]
    again = replanner.replan_after_oom(strong, gpu, SMOL, [300] * 200, at_step=3)  # a re-plan keeps the strength
    assert (again.objective, again.beta) == (name, 0.5)
    with pytest.raises(BadArgument, match=f"^A strength \\(beta\\) of 50 is out of range for {label}: use one from "):
        planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective=name, beta=50, **fixed))
    with pytest.raises(BadArgument, match="^A strength \\(beta\\) weighs preference tuning .* and this run is "
                                          "supervised"):
        planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective="sft", beta=0.5, **fixed))


def test_rated_answers_are_planned_for_kto_and_each_objective_names_the_data_it_needs():
    from core.errors import BadArgument

    gpu = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    fixed = dict(micro_batch=4, grad_accum=1, strategy="lora")
    sft = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(packing=False, **fixed))
    kto = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(rated=True, **fixed))
    assert (kto.objective, kto.packing, kto.beta) == ("kto", False, None)
    assert kto.reasons[0].startswith("Objective: KTO, as the rows are rated answers (strength 0.1): the answers "
                                     "rated good are raised")
    assert "its prompt with another row's answer (KTO's reference point: with no gradient, a forward pass counted " \
           "in the time but no memory for backward)" in kto.reasons[0]
    # The memory of a supervised step over the rated rows (the mismatched ones keep nothing for backward), the time
    # of one and a half (their forward pass); the reference pass, a forward pass over both, about a supervised step.
    assert kto.memory == sft.memory and kto.step_time_s == pytest.approx(1.5 * sft.step_time_s, rel=1e-3)
    assert kto.total_time_s == pytest.approx(kto.step_time_s * kto.total_steps + kto.epoch_time_s / 1.5, abs=0.2)
    assert kto.lr == pytest.approx(2e-5)  # a tenth of LoRA's rate
    assert any(r.startswith("The starting model's log-probabilities of the rated answers the run trains on")
               for r in kto.reasons)
    counted = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(rated=True, ratings=(150, 50), **fixed))
    assert counted.reasons[0].endswith("The 150 answers rated good and 50 rated bad weigh the same in all (each bad "
                                       "one ×3.00).") and not counted.warnings
    for ratings, says in (((200, 0), "Every answer is rated good: KTO then only raises them against the starting "
                                     "model; supervised tuning (--objective sft) learns answers rated good more "
                                     "directly."),
                          ((0, 200), "Every answer is rated bad: KTO then only lowers them against the starting "
                                     "model; it has no example of what to say instead, so add answers rated good.")):
        one_kind = planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(rated=True, ratings=ratings, **fixed))
        assert one_kind.warnings == [says]
    good_only = planner.make_plan(gpu, SMOL, [300] * 100, planner.Wishes(rated=True, objective="sft", **fixed))
    assert good_only.objective == "sft" and "the ones rated bad are left out" in good_only.reasons[0]
    with pytest.raises(BadArgument, match="^KTO learns from rated answers .* train it with --objective sft.$"):
        planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective="kto"))
    with pytest.raises(BadArgument, match="^KTO learns from rated answers .* --objective orpo, dpo, rpo or simpo.$"):
        planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective="kto", pairs=True))
    with pytest.raises(BadArgument, match="^DPO learns from preference pairs .* train it with --objective kto.$"):
        planner.make_plan(gpu, SMOL, [300] * 200, planner.Wishes(objective="dpo", rated=True))
    again = replanner.replan_after_oom(counted, gpu, SMOL, [300] * 200, at_step=3)  # it goes on learning the same
    assert (again.objective, again.packing) == ("kto", False)
    assert again.reasons[-1] == counted.reasons[0]  # and says so, with the counts of its ratings
    assert sum(r.startswith("Objective") for r in again.reasons) == 1


@pytest.mark.parametrize("wish,pairs,planned,says", [
    (None, False, "assistant", None),
    ("last", False, "last", "Learns from each conversation's last answer alone, as you asked"),
    ("all", False, "all", "Learns from every token, as you asked"),
    (None, True, "last", None),  # a pair is about its last answer
    ("last", True, "last", None),
])
def test_which_tokens_a_run_learns_from(wish, pairs, planned, says):
    plan = planner.make_plan(CPU_ONLY, SMOL, [100] * 40, planner.Wishes(train_on=wish, pairs=pairs, strategy="lora"))
    assert plan.train_on == planned
    said = [r for r in plan.reasons if r.startswith("Learns from")]
    assert (len(said) == 1 and said[0].startswith(says)) if says else not said
    again = replanner.replan_after_oom(plan, CPU_ONLY, SMOL, [100] * 40, at_step=2)
    assert again.train_on == planned and [r for r in again.reasons if r.startswith("Learns from")] == said


@pytest.mark.parametrize("wish,pairs,sentence", [
    ("all", True, "ORPO learns from each conversation's last answer alone; --train-on all applies to supervised "
                  "runs, so leave it out."),
    ("every", False, "--train-on every: expected one of assistant, last, all."),
])
def test_a_train_on_that_cannot_be_is_one_sentence(wish, pairs, sentence):
    from core.errors import BadArgument

    with pytest.raises(BadArgument) as refused:
        planner.make_plan(CPU_ONLY, SMOL, [100] * 40, planner.Wishes(train_on=wish, pairs=pairs))
    assert str(refused.value) == sentence
