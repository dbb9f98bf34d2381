"""The offload strategy's weight streaming, on a tiny random Llama on the CPU with `stream='always'` (the same
code a GPU runs, with CPU tensors as the ring buffers): training gives LoRA's (or QLoRA's) losses, with and
without gradient checkpointing; weights on "NVMe" give the same as in RAM and every byte read is counted;
the ring never holds more layers than it has buffers, and the prefetch has every layer in place in time."""

from __future__ import annotations

import pytest
import torch

from core import training
from core.errors import BadArgument, DiskFull
from core.strategies import get as get_strategy
from tests.core.test_strategies import examples, random_llama, run_steps

STEPS = 3
LORA = {"r": 4, "alpha": 8}
STREAM = {**LORA, "stream": "always", "where": "ram"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """A tiny model's matrices take microseconds; spreading them over threads costs far more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("four-layers"), 4)


def session(tmp_path, model_dir, strategy: str, options: dict, run: str, **over) -> training.Session:
    from core.run_config import RunConfig

    fields = dict(run_id=run, run_dir=str(tmp_path / run), db_path=str(tmp_path / "h.db"), model_path=str(model_dir),
                  data_path="unused", strategy=strategy, strategy_options=options, micro_batch=2, grad_accum=2,
                  lr=1e-2, warmup_ratio=0.0, seed=7, device="cpu", keep_checkpoints=1)
    return training.Session(RunConfig(**{**fields, **over}), STEPS)


def adapters(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("checkpointing,in_ram", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["saved-weights", "checkpointing", "saved-weights-activations-in-ram",
                              "checkpointing-activations-in-ram"])
def test_streamed_training_gives_loras_losses(four_layers, tmp_path, monkeypatch, checkpointing, in_ram):
    from core.offload import activations

    monkeypatch.setattr(activations, "SMALL", 0)  # the tiny model's activations are small: move every one
    data = examples(vocab=1000)
    acts = {"activations_on_host": in_ram}
    plain = session(tmp_path, four_layers, "lora", {**LORA, **acts}, "plain", gradient_checkpointing=checkpointing)
    streamed = session(tmp_path, four_layers, "offload", {**STREAM, "quantize": False, **acts}, "streamed",
                       gradient_checkpointing=checkpointing)
    streamer = streamed.model.tuneforge_offload
    assert streamer.resident_layers() == [0, 1]  # the rest is in the store, not in the model
    assert all(p.numel() == 0 for p in streamed.model.base_model.model.model.layers[3].parameters()
               if not p.requires_grad)
    assert run_steps(streamed, data, STEPS) == pytest.approx(run_steps(plain, data, STEPS), rel=1e-5)
    ours, theirs = adapters(streamed.model), adapters(plain.model)
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-6), name
    # Every micro-batch streams layers 2 and 3 in for forward and 1 and 0 back for backward (0 and 1 are still
    # there from the previous backward), always one step ahead of the layer that needs it.
    micro_batches = STEPS * 2
    assert streamer.stalls == 0
    assert streamer.loads == 2 + micro_batches * 4
    assert streamer.peak_resident == 2
    if in_ram:  # the streamer hands its layers' activations on to RAM: the same bytes as without streaming, no
        # streamed weight among them (those are the streamer's tokens), all of it given back
        assert streamed.activations.moved == plain.activations.moved > 0
        assert streamed.activations.pool.used == 0


@pytest.mark.parametrize("ring,checkpointing", [(2, False), (3, True)])
def test_4bit_base_streams_as_qlora_trains(four_layers, tmp_path, ring, checkpointing):
    """bitsandbytes keeps the packed weight for backward as a plain attribute of its autograd context (no saved-
    tensor hook sees it), so a layer must come back into the very buffer it ran in: with 3 buffers and 4 layers,
    layer 3 runs in layer 0's buffer."""
    data = examples(vocab=1000)
    plain = session(tmp_path, four_layers, "qlora", LORA, "qlora", gradient_checkpointing=checkpointing)
    streamed = session(tmp_path, four_layers, "offload", {**STREAM, "ring": ring}, "nf4",
                       gradient_checkpointing=checkpointing)
    frozen = [p for p in streamed.model.base_model.model.model.layers[0].parameters() if not p.requires_grad]
    assert torch.uint8 in {p.dtype for p in frozen}  # the packed nf4 codes are what streams
    assert run_steps(streamed, data, STEPS) == pytest.approx(run_steps(plain, data, STEPS), rel=1e-5)
    streamer = streamed.model.tuneforge_offload
    assert streamer.stalls == 0 and all(slot == i % ring for i, slot in streamer.slot_of.items())


def test_weights_on_disk_train_as_in_ram_and_every_byte_read_is_counted(four_layers, tmp_path):
    data = examples(vocab=1000)
    ram = session(tmp_path, four_layers, "offload", {**STREAM, "quantize": False}, "ram")
    folder = tmp_path / "nvme"
    disk = session(tmp_path, four_layers, "offload", {**STREAM, "quantize": False, "where": "disk",
                                                      "folder": str(folder)}, "disk")
    store = disk.model.tuneforge_offload.store
    files = sorted(folder.glob("layer-*.bin"))
    assert [f.name for f in files] == [f"layer-{i:04d}.bin" for i in range(4)]
    assert all(f.stat().st_size % 4096 == 0 for f in files)
    assert store.bytes_written == store.total_bytes
    notes = []
    assert run_steps(disk, data, STEPS, notes) == pytest.approx(run_steps(ram, data, STEPS), abs=1e-6)
    assert notes[0][1] == (f"Frozen layer weights stream from NVMe ({folder}) through 2 buffers on the CPU: chosen "
                           f"by the setting where=disk; loaded one layer at a time. The drive took "
                           f"{store.total_bytes / 2**30:.2f} GiB once, at "
                           "load; steps only read.") and notes[1][1] is None
    assert store.bytes_written == store.total_bytes  # no wear per step: frozen weights are only read back
    streamer = disk.model.tuneforge_offload
    assert store.bytes_read == streamer.bytes_copied == streamer.loads * store.nbytes(0)  # layers are alike
    assert streamer.loads > 4 and streamer.stalls == 0
    assert disk.placement["frozen weights"] == "NVMe" and ram.placement["frozen weights"] == "RAM"
    assert store.placement == f"NVMe ({folder})"
    streamer.close()
    assert not list(folder.glob("layer-*.bin"))  # scratch: rebuilt from the model at every load


def test_the_base_loads_one_layer_at_a_time_or_whole_when_it_must(four_layers, tmp_path, monkeypatch):
    """Streamed, the model is never loaded whole (transformers' from_pretrained is not called); a folder the
    layer-wise loader cannot read (here: no safetensors) is loaded whole instead, trains the same, and says why."""
    from transformers import AutoModelForCausalLM

    from core.offload import layerwise

    data = examples(vocab=1000)
    with monkeypatch.context() as patched:
        patched.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("loaded whole"))
        by_layer = session(tmp_path, four_layers, "offload", {**STREAM, "quantize": False}, "by-layer")
    monkeypatch.setattr(layerwise, "weight_files", lambda path: None)
    whole = session(tmp_path, four_layers, "offload", {**STREAM, "quantize": False}, "whole")
    notes: list = []
    assert run_steps(whole, data, STEPS, notes) == pytest.approx(run_steps(by_layer, data, STEPS), abs=1e-6)
    assert notes[0][1].endswith("; loaded whole first (the model folder has no safetensors files).")


def test_the_ring_never_holds_more_layers_than_it_has_buffers(tmp_path_factory, tmp_path):
    """Six layers through three buffers: whenever a layer is asked for, in forward or in backward, at most three
    layers have weights, and after the asking the one asked for is among them."""
    model_dir = random_llama(tmp_path_factory.mktemp("six"), 6)
    run = session(tmp_path, model_dir, "offload", {**STREAM, "quantize": False, "ring": 3}, "ring")
    layers = run.model.base_model.model.model.layers
    streamer = run.model.tuneforge_offload
    seen = []
    make_resident = streamer.make_resident

    def counting(i):
        slot = make_resident(i)
        seen.append((i, {j for j, layer in enumerate(layers)
                         if any(p.numel() for p in layer.parameters() if not p.requires_grad)}))
        return slot

    streamer.make_resident = counting
    run_steps(run, examples(vocab=1000), 2)
    assert {i for i, _ in seen} == set(range(6))  # forward asks 0..5, backward 5..0
    assert all(len(holding) <= 3 and i in holding for i, holding in seen)
    assert streamer.peak_resident == 3 and streamer.stalls == 0


def test_on_the_cpu_nothing_streams_unless_asked(four_layers, tmp_path):
    run = session(tmp_path, four_layers, "offload", {**LORA, "quantize": False}, "cpu")
    assert not hasattr(run.model, "tuneforge_offload")
    assert set(run.placement.values()) == {"RAM"}  # the CPU's memory is RAM


def test_a_drive_without_room_is_refused_in_a_sentence(four_layers, tmp_path, monkeypatch):
    import shutil

    from core.offload import weight_store

    monkeypatch.setattr(weight_store.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1))
    with pytest.raises(DiskFull, match="free some space or set the offload strategy's 'folder'"):
        session(tmp_path, four_layers, "offload", {**STREAM, "quantize": False, "where": "disk"}, "full")


@pytest.mark.parametrize("values,message", [({"where": "cloud"}, "'where'"), ({"ring": 1}, "'ring'"),
                                            ({"stream": "never"}, "'stream'")])
def test_bad_offload_settings_name_the_setting(values, message):
    with pytest.raises(BadArgument, match=message):
        get_strategy("offload").options(values)


def test_the_memory_model_counts_what_the_store_and_ring_hold(four_layers, tmp_path):
    import json

    from core import memory_model as mm
    from core.model_shape import ModelShape

    run = session(tmp_path, four_layers, "offload", {**STREAM, "quantize": False}, "counted")
    store = run.model.tuneforge_offload.store
    shape = ModelShape.from_config(json.loads((four_layers / "config.json").read_text()))
    est = mm.estimate(shape, mm.Setup("offload", 2, 16, compute_bytes=4, on_gpu=False,
                                      **run.strategy.setup_fields(run.options, "cpu")))
    # Within the store's padding (each tensor at 256 bytes, each layer at 4 KiB: a few % on a tiny model).
    assert est.ram["offloaded weights"] == pytest.approx(store.total_bytes, rel=0.05)
    assert est.device["weights (2 layers resident, rest streamed)"] == pytest.approx(2 * store.slot_bytes, rel=0.05)


def test_auto_keeps_the_weights_in_ram_only_with_room_to_spare(monkeypatch):
    from collections import namedtuple

    import psutil

    from core.offload.install import choose_where

    memory = namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(40 << 30))
    where, reason = choose_where("auto", 30 << 30)
    assert where == "ram" and reason == "30.0 GiB of layer weights fit the 40.0 GiB of free RAM"
    where, reason = choose_where("auto", 37 << 30)
    assert where == "disk" and "do not fit the 40.0 GiB of free RAM with 4 GiB to spare" in reason
    assert choose_where("ram", 37 << 30)[0] == "ram"  # as set, whatever the RAM


LISA = {"layers": 1, "interval": 1, "embeddings": True}


@pytest.mark.parametrize("where,checkpointing", [("ram", False), ("disk", True)])
def test_lisa_with_its_frozen_layers_streamed_trains_as_lisa(four_layers, tmp_path, monkeypatch, where, checkpointing):
    """LISA's layers not training stream through the ring; the sampled one is owned by the "GPU" and goes back
    to the store, trained, when LISA lets it go: the same losses and the same weights as LISA with every layer
    resident, in RAM or on disk, with and without checkpointing."""
    from core.offload import install

    if where == "disk":  # 'auto' finds no room in RAM
        monkeypatch.setattr(install, "RAM_SPARE", 1 << 60)
    data = examples(vocab=1000)
    over = dict(gradient_checkpointing=checkpointing, lr=3e-3, seed=3)  # seed 3 samples layers 1, 0, 2
    plain = session(tmp_path, four_layers, "lisa", LISA, "plain", **over)
    streamed = session(tmp_path, four_layers, "lisa", {**LISA, "stream_frozen": True}, "streamed", **over)
    streamer = streamed.model.tuneforge_offload
    assert streamer.store.where == where and streamed.placement["frozen weights"] == ("NVMe" if where == "disk"
                                                                                      else "RAM")
    assert streamed.trainable_count == plain.trainable_count
    active, notes, written = [], [], []
    for step in range(1, STEPS + 1):
        assert run_steps(streamed, data, step, notes) == pytest.approx(run_steps(plain, data, step), rel=1e-5)
        active.append(streamed.model.tuneforge_lisa.active)
        written.append(streamed.io_stats().get("written_last_step"))
        assert streamer.owned == set(active[-1]) and streamer.stalls == 0
        assert len(streamer.slot_of) <= 2  # the ring, beside the owned layer
    assert active == [[1], [0], [2]]  # layers were let go, and so written back
    layer = streamer.store.nbytes(0)  # the drive's wear: a let-go layer's file is written again, nothing else is
    assert written == ([0, layer, layer] if where == "disk" else [None] * 3)
    assert streamed.io_stats()["streamed_bytes"] == streamer.bytes_copied > 0
    assert notes[0][1].startswith("Frozen layer weights stream from ") and "Training layers" in notes[0][1]
    with streamed.strategy.weights_on_host(streamed.model):
        ours = dict(streamed.model.named_parameters())
        for name, p in plain.model.named_parameters():
            assert torch.allclose(ours[name], p, atol=1e-6), name
    assert streamer.resident_layers() == sorted(set(streamer.slot_of) | set(active[-1]))
    # On the host (a checkpoint, a resume): the streamed layers are the store's own bytes, on disk its files mapped
    # into memory, so RAM never holds them at once; what is written there lands in the store, counted as wear.
    store, i = streamer.store, streamer.order[0]
    param = store.layouts[i][0][0].param
    with streamed.strategy.weights_on_host(streamed.model):
        before, written = param.detach().clone(), store.bytes_written
    with streamed.strategy.weights_on_host(streamed.model, write=True):
        if where == "disk":
            assert param.untyped_storage().filename == str(store.files[i])
        with torch.no_grad():
            param.add_(1.0)
    assert store.bytes_written - written == (sum(store.nbytes(k) for k in streamer.order) if where == "disk" else 0)
    with streamed.strategy.weights_on_host(streamed.model):
        assert before.numel() > 0 and torch.equal(param, before + 1.0)


def test_lisa_on_the_host_sizes_its_pool_by_the_streamed_layers_real_shapes(four_layers, tmp_path):
    run = session(tmp_path, four_layers, "lisa", {**LISA, "stream_frozen": True, "optimizer_on_host": True}, "host")
    plain = session(tmp_path, four_layers, "lisa", {**LISA, "optimizer_on_host": True}, "plain")
    assert run.optimizer.pool.capacity == plain.optimizer.pool.capacity
    data = examples(vocab=1000)
    assert run_steps(run, data, STEPS) == pytest.approx(run_steps(plain, data, STEPS), rel=1e-5)


@pytest.mark.parametrize("strategy,options", [("lora", LORA), ("dora", LORA), ("lisa", LISA)])
def test_a_result_too_big_for_the_gpu_answers_with_its_layers_streamed(four_layers, tmp_path, strategy, options):
    """Trying a trained model whose weights do not fit the GPU: its layers stream from RAM as in training (adapter
    runs over the streamed base, whole-model runs from their own result), and it answers exactly as loaded whole."""
    from core import inference

    run = session(tmp_path, four_layers, strategy, options, "run", lr=3e-3)
    run_steps(run, examples(vocab=1000), 2)
    run.save_result(tmp_path / "result")
    whole = inference.trained_model(four_layers, strategy, tmp_path / "result", torch.float32).eval()
    streamed = inference.streamed_model(four_layers, strategy, tmp_path / "result", torch.float32, "cpu").eval()
    assert streamed.tuneforge_offload.store.where == "ram" and streamed.tuneforge_offload.loads
    x = torch.tensor([examples(vocab=1000)[0].input_ids])
    with torch.no_grad():
        assert torch.allclose(streamed(input_ids=x).logits, whole(input_ids=x).logits, atol=1e-5)
        assert torch.equal(streamed.generate(input_ids=x, max_new_tokens=4, do_sample=False),
                           whole.generate(input_ids=x, max_new_tokens=4, do_sample=False))
    folder = inference.weights_folder(four_layers, strategy, tmp_path / "result")
    assert folder == (tmp_path / "result" if strategy == "lisa" else four_layers)
    embeddings = 1000 * 64 * 2  # in bf16: the four layers add about twice as much
    assert inference.fits(folder, inference.ROOM + 4 * embeddings)
    assert not inference.fits(folder, inference.ROOM + embeddings)


def test_a_vision_language_checkpoint_streams_its_language_model(tmp_path):
    """Qwen 3.5's released checkpoints keep the language model under `model.language_model.` (beside a vision
    tower): streaming reads its layers by the causal LM's names all the same, instead of loading it whole, and
    its Gated DeltaNet layers train as LoRA's do."""
    from tests.core.vision_language import qwen3_5

    base = qwen3_5(tmp_path / "qwen3_5")
    data = examples(vocab=1000)
    streamed = session(tmp_path, base, "offload", {**STREAM, "quantize": False}, "streamed")
    assert streamed.model.tuneforge_offload.resident_layers() == [0, 1]
    plain = session(tmp_path, base, "lora", LORA, "plain")
    assert run_steps(streamed, data, STEPS) == pytest.approx(run_steps(plain, data, STEPS), rel=1e-5)


@pytest.mark.parametrize("strategy,options", [("qlora", LORA), ("offload", {**STREAM, "quantize": True})])
def test_gated_deltanet_s_per_head_projections_stay_16_bit_in_a_4bit_base(tmp_path, strategy, options):
    """Qwen 3.5's decay and beta projections give one number per head: bitsandbytes' CPU kernel refuses so few
    outputs (it crashed a QLoRA run at its first validation), and 4 bits would save a few kB. The others are 4-bit,
    and the run trains."""
    from tests.core.vision_language import qwen3_5

    run = session(tmp_path, qwen3_5(tmp_path / "qwen3_5"), strategy, options, "run")
    run_steps(run, examples(vocab=1000), 1)
    kinds = {name.rsplit(".", 1)[-1]: type(m).__name__ for name, m in run.model.named_modules()
             if name.endswith(("in_proj_a", "in_proj_b", "in_proj_qkv", "out_proj")) and hasattr(m, "weight")}
    assert {kinds["in_proj_a"], kinds["in_proj_b"]} == {"Linear"} and kinds["in_proj_qkv"] == kinds["out_proj"] == (
        "Linear4bit")
    model = run.model
    model.eval()
    with torch.no_grad():  # what validation does: bitsandbytes packs 4-bit weights for its CPU kernel here
        model(input_ids=torch.tensor([[5, 6, 7, 8]]))
