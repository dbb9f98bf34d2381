"""QLoRA keeps a mixture of experts' frozen experts in 4 bits (core/four_bit_experts.py), loaded one layer at a time
from checkpoints that keep a tensor per expert (core/expert_checkpoint.py), for each family of the MoE table."""

from __future__ import annotations

import copy

import pytest
import torch

from core import four_bit_experts
from core.four_bit_experts import FourBitStack
from core.offload import layerwise
from tests.core.test_mixture_of_experts import FAMILIES, built
from tests.core.test_offload_optimizer import tiny_tokenizer
from tests.core.test_offload_stream import session
from tests.core.test_strategies import examples, run_steps


def stacks(model) -> list[FourBitStack]:
    return [m for m in model.modules() if isinstance(m, FourBitStack)]


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_four_bit_experts_answer_and_backpropagate_as_their_dequantized_weights_do(model_type):
    """Our experts forward over 4-bit experts against transformers' own over the same weights dequantized back into
    its 3-D parameters: the same logits and the same gradients everywhere else (backward dequantizes again); and
    the family's own experts code, which indexes each expert of a stack, answers the same."""
    quantized = built(model_type)
    reference = copy.deepcopy(quantized)
    four_bit_experts.quantize_experts(quantized, "cpu", "nf4", True)
    four_bit_experts.use_four_bit_experts(quantized)
    assert not [n for n, p in quantized.named_parameters() if p.dim() == 3] and len(stacks(quantized)) == 4
    modules = dict(quantized.named_modules())
    for name, module in reference.named_modules():
        for weight in four_bit_experts.WEIGHTS:
            stack = getattr(modules[name], weight, None)
            if isinstance(stack, FourBitStack):
                dequantized = torch.stack([stack.weight(e, torch.float32) for e in range(stack.shape[0])])
                with torch.no_grad():
                    getattr(module, weight).copy_(dequantized.transpose(1, 2) if module.is_transposed else dequantized)
    ids = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(1))
    ours, theirs = quantized(ids).logits, reference(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    ours.square().mean().backward()
    theirs.square().mean().backward()
    grads = {n: p.grad for n, p in reference.named_parameters() if p.dim() < 3}
    for name, p in quantized.named_parameters():
        if p.requires_grad:  # not the stacks' codes
            torch.testing.assert_close(p.grad, grads[name], atol=1e-5, rtol=1e-3)
    quantized.set_experts_implementation("eager")  # the module's own code, indexing the stacks (`stack[e]`)
    with torch.no_grad():
        torch.testing.assert_close(quantized(ids).logits, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_a_checkpoint_reads_every_weight_as_transformers_loads_it(tmp_path, model_type):
    """transformers saves (as the Hub releases) a tensor per expert and projection, Mixtral's under its own MoE block
    name (w1, w3, w2 of `block_sparse_moe`), gpt-oss and Gemma 4 their experts stacked: read by the model's names,
    each weight is the one transformers' loader makes, so the layer-by-layer loads (QLoRA's 4-bit experts, offload)
    take them."""
    model = built(model_type)
    model.save_pretrained(tmp_path)
    files = layerwise.weight_files(tmp_path)
    checkpoint = layerwise.Checkpoint(files)
    for name, p in model.named_parameters():
        assert torch.equal(checkpoint.get(name), p.detach()), name
    assert layerwise.names_differ(model, files, stacked=True) == ""
    per_expert = any(".experts.0." in name for name in files)
    assert per_expert == (model_type not in ("gpt_oss", "gemma4_text")) == bool(layerwise.names_differ(model, files))


@pytest.mark.parametrize("model_type", ["qwen3_moe", "mixtral"])
def test_qlora_keeps_a_mixture_of_experts_frozen_experts_in_4_bits_loaded_layer_by_layer(tmp_path, model_type):
    base = tmp_path / "base"
    model = built(model_type)
    model.save_pretrained(base)
    tiny_tokenizer(base)
    experts = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 3)
    run = session(tmp_path, base, "qlora", {"r": 4, "alpha": 8, "experts": False}, "run")
    loaded = run.model.get_base_model()
    assert "tuneforge_load_note" not in loaded.__dict__  # read one layer at a time, not whole
    assert not [n for n, p in loaded.named_parameters() if p.dim() == 3]
    assert len(stacks(loaded)) == 2 * 2 and sum(s.codes.numel() for s in stacks(loaded)) == experts // 2
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in run.model.named_parameters() if p.requires_grad}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}  # the attention: not the router, not the experts
    losses = run_steps(run, examples(vocab=1000), 3)
    assert losses[-1] < losses[0]
    # with checkpointing the experts are dequantized again in the recompute: the same steps
    recomputed = session(tmp_path, base, "qlora", {"r": 4, "alpha": 8, "experts": False}, "ckpt",
                         gradient_checkpointing=True)
    assert run_steps(recomputed, examples(vocab=1000), 3) == pytest.approx(losses, rel=1e-6)


def test_a_checkpoint_not_read_layer_by_layer_is_loaded_whole_then_its_experts_quantized(tmp_path, monkeypatch):
    """Where the checkpoint cannot be read a layer at a time, transformers loads it (the experts in 16 bits) and the
    experts are quantized after; the run's log says loading took more memory than training."""
    base = tmp_path / "base"
    built("qwen3_moe").save_pretrained(base)
    tiny_tokenizer(base)
    monkeypatch.setattr(layerwise, "skeleton", lambda *a: (None, "the model folder has no safetensors files"))
    run = session(tmp_path, base, "qlora", {"r": 4, "alpha": 8, "experts": False}, "run")
    assert len(stacks(run.model)) == 4 and not [n for n, p in run.model.named_parameters() if p.dim() == 3]
    notes = []
    run_steps(run, examples(vocab=1000), 1, notes)
    assert notes[0][1].startswith("The experts were loaded in 16 bits before being quantized (the model folder has no")


def test_offload_streams_the_4_bit_experts_with_their_layers_and_trains_as_qlora_does(tmp_path):
    """Offload's weight store takes each layer's 4-bit expert codes with its other frozen weights (a quarter of the
    16-bit experts' bytes to hold and stream), and the streamed run trains exactly as QLoRA's resident one."""
    base = tmp_path / "base"
    model = built("qwen3_moe")
    model.save_pretrained(base)
    tiny_tokenizer(base)
    options = {"r": 4, "alpha": 8, "experts": False}
    resident = session(tmp_path, base, "qlora", options, "resident")
    streamed = session(tmp_path, base, "offload", {**options, "stream": "always", "where": "ram"}, "streamed")
    store = streamed.model.tuneforge_offload.store
    slices, nbytes = store.layouts[1]
    codes = [s for s in slices if any(s.param is stack.codes for stack in stacks(streamed.model))]
    assert len(codes) == 2  # gate_up_proj's and down_proj's codes, in the store beside the attention's
    experts = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 3 and ".layers.1." in n)
    assert sum(s.nbytes for s in codes) == experts // 2 and nbytes < experts
    note = streamed.model.get_base_model().tuneforge_offload_note
    assert note.startswith("Frozen layer weights (the experts as 4-bit codes) stream") and "one layer at a time" in note
    data = examples(vocab=1000)
    assert run_steps(streamed, data, 3) == pytest.approx(run_steps(resident, data, 3), rel=1e-5)


def test_a_run_too_big_for_the_gpu_in_16_bits_answers_over_the_4_bit_base_it_trained_on(tmp_path):
    """Trying a QLoRA run whose model does not fit the GPU in 16 bits (Qwen3-30B-A3B on 24 GB) loads it as it trained,
    its experts in 4 bits too, so it answers at the GPU's speed instead of streaming 16-bit layers; its answers are
    the run's own. The 4-bit load fits where the 16-bit one does not."""
    from core import inference

    base = tmp_path / "base"
    built("qwen3_moe").save_pretrained(base)
    tiny_tokenizer(base)
    run = session(tmp_path, base, "qlora", {"r": 4, "alpha": 8, "experts": False}, "run", lr=3e-3)
    run_steps(run, examples(vocab=1000), 2)
    run.save_result(tmp_path / "result")
    tried = inference.four_bit_model(base, "qlora", tmp_path / "result", torch.float32, "cpu").eval()
    assert len(stacks(tried)) == 4
    x = torch.tensor([examples(vocab=1000)[0].input_ids])
    with torch.no_grad():
        torch.testing.assert_close(tried(input_ids=x).logits, run.model.eval()(input_ids=x).logits, atol=1e-5,
                                   rtol=1e-4)
    adapter = inference.adapter_of(base, "qlora", tmp_path / "result")
    assert adapter == tmp_path / "result" and not inference.experts_adapted(adapter)
    model = built("qwen3_moe")
    experts = sum(p.numel() for p in model.parameters() if p.dim() == 3)
    free = inference.ROOM + 2 * sum(p.numel() for p in model.parameters()) - experts  # 16 bits less half the experts'
    assert not inference.fits(base, free) and inference.fits(base, free, "nf4", experts_4bit=True)


def mxfp4(folder) -> None:
    """The gpt-oss checkpoint in `folder` rewritten as gpt-oss is released: each expert weight as MXFP4 (random
    blocks of two 4-bit values a byte, a power-of-two scale per 32 values) and the config saying so."""
    import json

    from safetensors.torch import load_file, save_file

    state, g = load_file(str(folder / "model.safetensors")), torch.Generator().manual_seed(3)
    for name in [n for n in state if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        experts, inputs, outputs = state.pop(name).shape  # gpt-oss keeps them [experts, in, out]
        state[f"{name}_blocks"] = torch.randint(0, 256, (experts, outputs, inputs // 32, 16), dtype=torch.uint8,
                                                generator=g)
        state[f"{name}_scales"] = torch.randint(118, 124, (experts, outputs, inputs // 32), dtype=torch.uint8,
                                                generator=g)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (folder / "config.json").write_text(json.dumps(config))


def test_gpt_oss_as_released_in_mxfp4_trains_with_lora_and_with_its_experts_in_4_bits(tmp_path):
    """gpt-oss's experts are stored in MXFP4: the plain load decodes them (not fetching kernels from the Hub), the
    layer-by-layer reader decodes them the same way (transformers' own function), and QLoRA keeps them in 4 bits
    (transformers will not load MXFP4 beside bitsandbytes at all)."""
    from core import causal_lm

    base = tmp_path / "base"
    built("gpt_oss").save_pretrained(base)
    mxfp4(base)
    tiny_tokenizer(base)
    loaded = causal_lm.from_pretrained(base, dtype=torch.float32)
    files = layerwise.weight_files(base)
    assert layerwise.names_differ(loaded, files) and not layerwise.names_differ(loaded, files, stacked=True)
    checkpoint = layerwise.Checkpoint(files)
    for name, p in loaded.named_parameters():
        assert torch.equal(checkpoint.get(name).float(), p.detach()), name
    data = examples(vocab=1000)
    four_bit = session(tmp_path, base, "qlora", {"r": 4, "alpha": 8, "experts": False}, "four")
    assert len(stacks(four_bit.model)) == 4 and "tuneforge_load_note" not in four_bit.model.get_base_model().__dict__
    plain = session(tmp_path, base, "lora", {"r": 4, "alpha": 8}, "plain")
    for run in (four_bit, plain):
        losses = run_steps(run, data, 2)
        assert all(loss == loss and loss > 0 for loss in losses), losses


def test_a_run_with_4_bit_experts_merges_into_the_base_it_trained_on_when_asked(tmp_path):
    """Merging into the nf4-rounded base (what QLoRA training saw) rounds the frozen 4-bit experts too: the merged
    experts are exactly the ones the run computed with; by default they stay as released."""
    from core import atomic, settings
    from core.gguf_export import merge

    base = tmp_path / "base"
    built("qwen3_moe").save_pretrained(base)
    tiny_tokenizer(base)
    run = session(tmp_path, base, "qlora", {"r": 4, "alpha": 8, "experts": False}, "run", lr=3e-3)
    atomic.write_json(tmp_path / "run" / "run.json", settings.to_dict(run.cfg))  # as the app writes it
    run_steps(run, examples(vocab=1000), 2)
    run.save_result(tmp_path / "run" / "result")
    row = {"id": "moe", "run_dir": str(tmp_path / "run"), "strategy": "qlora", "model_path": str(base),
           "status": "done"}
    merged, _ = merge.merged_model(row, nf4_base=True)
    plain, _ = merge.merged_model(row)
    released = built("qwen3_moe")
    for i, layer in enumerate(run.model.get_base_model().model.layers):
        for name in ("gate_up_proj", "down_proj"):
            stack = getattr(layer.mlp.experts, name)
            trained = torch.stack([stack.weight(e, torch.float32) for e in range(stack.shape[0])])
            assert torch.equal(getattr(merged.model.layers[i].mlp.experts, name).detach(), trained)
            original = getattr(released.model.layers[i].mlp.experts, name).detach()
            assert torch.equal(getattr(plain.model.layers[i].mlp.experts, name).detach(), original)
            assert not torch.equal(trained, original)
