"""The memory model against measurement: what autograd really saves, counted with saved-tensor hooks
on real HF Llama models (CPU), for every strategy's activation family and both compute widths."""

import warnings
import weakref

import pytest

from core import memory_model as mm
from core.model_shape import ModelShape
from core.optimizers import CHUNK_ELEMENTS

# A shape the coefficients were not fitted on: odd widths, grouped-query attention.
CONFIG = dict(hidden_size=192, intermediate_size=560, num_hidden_layers=3, num_attention_heads=3,
              num_key_value_heads=1, vocab_size=1000, max_position_embeddings=512, tie_word_embeddings=True)


def session_for(strategy: str, compute_bytes: int, checkpointing: bool, tmp_path, options: dict | None = None):
    """The trainer's own Session over a random model of CONFIG (so measurements follow the real runs)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from core.run_config import RunConfig
    from core.training import Session

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(**CONFIG)).save_pretrained(tmp_path / "model")
    cfg = RunConfig(run_id="m", run_dir=str(tmp_path / "run"), db_path="unused", model_path=str(tmp_path / "model"),
                    data_path="unused", strategy=strategy, device="cpu",
                    precision="fp32" if compute_bytes == 4 else "bf16", gradient_checkpointing=checkpointing,
                    strategy_options=options if options is not None else ({} if strategy == "full" else {"r": 16}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bitsandbytes' notes about its CPU kernels
        return Session(cfg, total_steps=1)


def saved_bytes(strategy: str, compute_bytes: int, checkpointing: bool, tmp_path, batch=2, seq=96,
                options: dict | None = None) -> int:
    """Bytes of the distinct non-parameter tensors autograd keeps after one forward with a loss, with the
    model loaded and prepared by the trainer's own Session."""
    import torch

    session = session_for(strategy, compute_bytes, checkpointing, tmp_path, options)
    cfg = session.cfg
    model = session.model
    session.strategy.before_step(0, model, session.optimizer, session.options, cfg)  # LISA samples its layers
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    packed = []

    def pack(t):
        packed.append(weakref.ref(t))  # weak: a detached side graph (DoRA's norm) frees its tensors at once
        return t

    ids = torch.randint(0, CONFIG["vocab_size"], (batch, seq))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=ids, labels=ids)
    alive = {}
    for ref in packed:
        t = ref()
        if t is not None and t.untyped_storage().data_ptr() not in params:
            alive[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    del out
    return sum(alive.values())


CASES = [(s, b, c) for s in ("full", "lora", "dora") for b in (4, 2) for c in (False, True)] + [("qlora", 2, False)]


@pytest.mark.parametrize("strategy,compute_bytes,checkpointing", CASES)
def test_saved_activations_match_measurement(strategy, compute_bytes, checkpointing, tmp_path):
    shape = ModelShape.from_config(CONFIG)
    setup = mm.Setup(strategy, micro_batch=2, seq_len=96, compute_bytes=compute_bytes, checkpointing=checkpointing,
                     on_gpu=False)
    predicted = mm.saved_after_forward(shape, setup) + setup.tokens * shape.vocab * mm.LOGITS_SAVED_BYTES
    measured = saved_bytes(strategy, compute_bytes, checkpointing, tmp_path)
    assert abs(predicted - measured) / measured < 0.10, (predicted, measured)


@pytest.mark.parametrize("compute_bytes,checkpointing,embeddings", [(b, c, e) for b in (4, 2) for c in (False, True)
                                                                      for e in (False, True)])
def test_lisa_activations_are_bounded_by_full_fine_tuning(compute_bytes, checkpointing, embeddings, tmp_path):
    """The model counts LISA's activations as full fine-tuning's in every layer (the worst case: the lowest
    layer sampled). Measured with one layer of three active, it must never be under, and not far over:
    frozen layers keep no inputs for weight gradients, which is what the margin is."""
    shape = ModelShape.from_config(CONFIG)
    setup = mm.Setup("lisa", micro_batch=2, seq_len=96, compute_bytes=compute_bytes, checkpointing=checkpointing,
                     lisa_layers=1, lisa_embeddings=embeddings, on_gpu=False)
    predicted = mm.saved_after_forward(shape, setup) + setup.tokens * shape.vocab * mm.LOGITS_SAVED_BYTES
    measured = saved_bytes("lisa", compute_bytes, checkpointing, tmp_path,
                           options={"layers": 1, "embeddings": embeddings})
    assert measured * 0.99 <= predicted <= measured * 1.35, (predicted, measured)


@pytest.mark.parametrize("strategy,checkpointing", [("lora", True), ("lora", False), ("qlora", True), ("full", True)])
def test_activations_on_the_host_move_what_the_model_says(strategy, checkpointing, tmp_path):
    """`activations_on_host` moves what forward saves, the checkpointed layers' inputs included (torch's checkpoint
    saves them as any op does), and the memory model counts the same bytes."""
    import torch

    options = {"activations_on_host": True, **({} if strategy == "full" else {"r": 16})}
    session = session_for(strategy, 4, checkpointing, tmp_path, options)
    ids = torch.randint(0, CONFIG["vocab_size"], (2, 96))
    with session.activations():
        loss = session.model(input_ids=ids, labels=ids).loss
    moved = session.activations.moved
    loss.backward()
    setup = mm.Setup(strategy, micro_batch=2, seq_len=96, compute_bytes=4, checkpointing=checkpointing, lora_r=16,
                     on_gpu=False, activations_on_host=True)
    predicted = mm.activations_moved(ModelShape.from_config(CONFIG), setup)
    # Without checkpointing some views of one storage (attention's) cross separately, where the model counts the
    # storage once: about 15% more bytes than predicted. The planner only moves checkpointed runs' activations.
    assert abs(predicted - moved) / moved < (0.02 if checkpointing else 0.2), (predicted, moved)
    if checkpointing:  # every layer's input went, not only what lies outside the layers
        inputs = CONFIG["num_hidden_layers"] * setup.tokens * CONFIG["hidden_size"] * 4
        assert moved > inputs + setup.tokens * CONFIG["vocab_size"] * 4
        on_gpu = mm.Setup(**{**setup.__dict__, "on_gpu": True})  # (on the CPU, RAM is the device: nothing to move)
        assert mm.estimate(ModelShape.from_config(CONFIG), on_gpu).device[
            "activations (in RAM, one layer back at a time)"] < mm.estimate(ModelShape.from_config(CONFIG), setup
                                                                         ).device["activations (checkpointed)"]


def test_terms_are_named_and_follow_the_strategy():
    shape = ModelShape.from_config(CONFIG)
    lora = mm.estimate(shape, mm.Setup("lora", 1, 128))
    full = mm.estimate(shape, mm.Setup("full", 1, 128))
    qlora = mm.estimate(shape, mm.Setup("qlora", 1, 128))
    assert lora.device["weights"] == full.device["weights"] == shape.params * 2
    assert qlora.device["weights"] < lora.device["weights"]
    assert "adapter weights (fp32)" in lora.device and "adapter weights (fp32)" not in full.device
    assert full.device["gradients"] == shape.params * 2 > lora.device["gradients"]
    assert lora.device_total == sum(lora.device.values()) and "CUDA context" in lora.device
    best = "weights of the lowest validation loss"  # best/ beside the result: one more result on disk
    assert full.disk[best] == full.disk["result"] == shape.params * 2 and lora.disk[best] == lora.disk["result"]
    assert best not in mm.estimate(shape, mm.Setup("lora", 1, 128, keep_best=False)).disk
    ckpt = mm.estimate(shape, mm.Setup("lora", 8, 512, checkpointing=True))
    plain = mm.estimate(shape, mm.Setup("lora", 8, 512))
    assert ckpt.device["activations (checkpointed)"] < plain.device["activations"]


def test_offload_moves_terms_off_the_gpu():
    shape = ModelShape.from_config(CONFIG)
    opt = mm.estimate(shape, mm.Setup("full", 1, 128, offload="optimizer"))
    assert not any(k.startswith("optimizer state") for k in opt.device)
    # Our AdamW for base weights: two fp32 moments and an fp32 master per bf16 weight.
    assert opt.ram["optimizer state (adamw, fp32 masters) (offloaded)"] == shape.params * 12
    disk = mm.estimate(shape, mm.Setup("full", 1, 128, offload="weights", weights_on_disk=True))
    assert disk.disk["offloaded weights"] == shape.params * 2
    assert disk.device["weights (2 layers resident, rest streamed)"] < shape.params * 2


@pytest.mark.parametrize("storage,bits", [("fp32", 32), ("bf16", 16), ("int8", 8), ("nf4", mm.NF4_BITS)])
def test_weight_storage(storage, bits):
    shape = ModelShape.from_config({**CONFIG, "vocab_size": 8})  # nearly all weights in linear layers
    assert abs(mm.weight_bytes(shape, storage) * 8 / shape.params - bits) / bits < 0.05


def test_full_fine_tuning_peaks_in_the_optimizer_step_when_activations_are_small():
    # A big vocabulary and few tokens: the embedding's two fp32 temporaries in the step outweigh backward.
    shape = ModelShape.from_config({**CONFIG, "num_hidden_layers": 1, "vocab_size": 200000})
    small = mm.estimate(shape, mm.Setup("full", 1, 16))
    extra = small.device["optimizer step temporaries (beyond backward)"]
    # MasterAdamW updates one tensor at a time, in rows of at most CHUNK_ELEMENTS: two fp32 temporaries of those.
    part = min(shape.embedding_params, CHUNK_ELEMENTS)
    assert part < shape.embedding_params  # (rows of it at a time)
    assert extra + small.device["activations"] + small.device["logits and loss"] == 2 * 4 * part
    big = mm.estimate(shape, mm.Setup("full", 16, 512))
    assert not any(k.startswith("optimizer step") for k in big.device)


def test_the_fused_loss_needs_no_full_logits_and_the_model_knows_its_chunks():
    from tuneforge_kernels.fused_linear_cross_entropy import MIN_CHUNK_ROWS

    assert mm.FUSED_LOSS_MIN_ROWS == MIN_CHUNK_ROWS  # the memory model sizes the kernel's chunks as it does
    llama = ModelShape.from_config({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
                                    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                                    "vocab_size": 128256})
    plain, fused = (mm.Setup("lora", 4, 2048, checkpointing=True, fused_loss=f) for f in (False, True))
    full_logits = 8192 * 128256 * (mm.LOGITS_SAVED_BYTES + mm.LOGITS_BACKWARD_BYTES)
    assert mm.logits_bytes(llama, plain) == full_logits  # 12.5 GB of logits for 8k tokens
    chunk = max(256, -(-8192 * 4096 // 128256))
    assert mm.logits_bytes(llama, fused) == (chunk * 128256 + 8192 * 4096) * 2  # about 0.13 GB
    assert mm.estimate(llama, fused).device_total < mm.estimate(llama, plain).device_total - 10 * 2**30
    other = ModelShape.from_config({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 4, "vocab_size": 1000})
    assert mm.logits_bytes(other, fused) == mm.logits_bytes(other, plain)  # our kernels do not patch it
    assert mm.logits_bytes(llama, mm.Setup("lora", 4, 2048, on_gpu=False, fused_loss=True)) == full_logits
