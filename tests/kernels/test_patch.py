"""The switch, one table of architectures (STYLE §9): a tiny random model of each supported architecture with
all our kernels patched in gives the loss and gradients of the same model unpatched, every kernel really runs,
and the unpatched copy in the same process stays plain. Then what is skipped, and why."""

from __future__ import annotations

import copy

import pytest
import torch

from tuneforge_kernels import OPS
from transformers.integrations.moe import _default_apply_gate

from core.model_shape import ModelShape
from tuneforge_kernels.patch import ARCHITECTURES, LAYER_PREFIX, NOT_FOR, patch
from tests.kernels.conftest import DEVICE, close

SIZES = dict(vocab_size=1009, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def config(name: str, **sizes):
    import transformers as t

    sizes = {**SIZES, **sizes}
    eager = dict(attn_implementation="eager")  # Gemma's attention soft-capping
    return {
        "llama": lambda: t.LlamaConfig(**sizes, tie_word_embeddings=True),  # SmolLM's layout: a tied head
        "mistral": lambda: t.MistralConfig(**sizes),
        "qwen2": lambda: t.Qwen2Config(**sizes),
        "qwen3": lambda: t.Qwen3Config(**sizes, head_dim=16),
        "gemma2": lambda: t.Gemma2Config(**sizes, head_dim=16, final_logit_softcapping=30.0, **eager),
        "gemma3": lambda: t.Gemma3TextConfig(**sizes, head_dim=16, final_logit_softcapping=30.0, **eager),
        "smollm3": lambda: t.SmolLM3Config(**sizes, no_rope_layers=[1, 0], tie_word_embeddings=True, pad_token_id=0),
        "qwen3_moe": lambda: t.Qwen3MoeConfig(**sizes, head_dim=16, moe_intermediate_size=32, num_experts=4,
                                              num_experts_per_tok=2),
        "qwen2_moe": lambda: t.Qwen2MoeConfig(**sizes, moe_intermediate_size=32, shared_expert_intermediate_size=48,
                                              num_experts=4, num_experts_per_tok=2),  # a shared expert: an MLP
        "mixtral": lambda: t.MixtralConfig(**sizes, num_local_experts=4, num_experts_per_tok=2),
        "olmoe": lambda: t.OlmoeConfig(**sizes, num_experts=4, num_experts_per_tok=2, pad_token_id=0),
        "phi3": lambda: t.Phi3Config(**sizes, pad_token_id=0),
        "olmo2": lambda: t.Olmo2Config(**sizes, pad_token_id=0),
        "olmo3": lambda: t.Olmo3Config(**{**sizes, "num_hidden_layers": 4}, sliding_window=8, pad_token_id=0),
        "granite": lambda: t.GraniteConfig(**sizes, embedding_multiplier=12.0, residual_multiplier=0.22,
                                           attention_multiplier=0.0078125, logits_scaling=8.0),
        "lfm2": lambda: t.Lfm2Config(**{**sizes, "num_hidden_layers": 4}, full_attn_idxs=[1, 3], norm_eps=1e-6),
        "qwen3_5": lambda: t.Qwen3_5TextConfig(**{**sizes, "num_hidden_layers": 4}, head_dim=32, linear_key_head_dim=8,
                                               linear_value_head_dim=8, linear_num_key_heads=2,
                                               linear_num_value_heads=4),
        "qwen3_5_moe": lambda: t.Qwen3_5MoeTextConfig(**{**sizes, "num_hidden_layers": 4}, head_dim=32,
                                                      linear_key_head_dim=8, linear_value_head_dim=8,
                                                      linear_num_key_heads=2, linear_num_value_heads=4, num_experts=4,
                                                      num_experts_per_tok=2, moe_intermediate_size=32,
                                                      shared_expert_intermediate_size=48),
        "gemma4": lambda: t.Gemma4TextConfig(**sizes, head_dim=16, global_head_dim=32, sliding_window=8,
                                             final_logit_softcapping=30.0, hidden_size_per_layer_input=16,
                                             vocab_size_per_layer_input=1009),
        # Gemma 3 from 4B as transformers loads it: whole (Gemma3ForConditionalGeneration), a vision tower beside
        "gemma3_vlm": lambda: t.Gemma3Config(
            text_config=dict(**sizes, head_dim=16, final_logit_softcapping=30.0, attn_implementation="eager"),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               image_size=28, patch_size=14),
            mm_tokens_per_image=1, boi_token_index=1006, eoi_token_index=1007, image_token_index=1008),
        # Gemma 4 as transformers loads it: whole (Gemma4ForConditionalGeneration), its own forward capping the logits
        "gemma4_vlm": lambda: t.Gemma4Config(
            text_config=dict(**sizes, head_dim=16, global_head_dim=32, sliding_window=8, final_logit_softcapping=30.0,
                             hidden_size_per_layer_input=16, vocab_size_per_layer_input=1009, **eager),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               num_key_value_heads=2, head_dim=16), audio_config=None),
        "gpt_oss": lambda: t.GptOssConfig(**{**sizes, "intermediate_size": 32}, head_dim=16, num_local_experts=4,
                                          num_experts_per_tok=2, sliding_window=32, pad_token_id=0),
    }[name]()


# case → (architecture, LoRA on the projections (None, "lora", or "qlora": bitsandbytes nf4 bases), checkpointing)
CASES = {
    "llama-smollm": ("llama", None, False),
    "mistral": ("mistral", None, False),
    "qwen2": ("qwen2", None, False),
    "qwen3-checkpointing": ("qwen3", None, True),
    "gemma2": ("gemma2", None, False),
    "gemma3-text": ("gemma3", None, False),
    "smollm3-nope": ("smollm3", None, False),  # its second layer without rope
    "llama-peft-lora": ("llama", "lora", False),
    "qwen2-peft-lora-checkpointing": ("qwen2", "lora", True),  # q/k/v with biases
    "gemma2-peft-qlora": ("gemma2", "qlora", False),
    "llama-peft-qlora": ("llama", "qlora", False),
    "qwen3-moe-checkpointing": ("qwen3_moe", None, True),  # mixtures of experts: no dense MLP, or a shared expert
    "qwen2-moe": ("qwen2_moe", None, False),
    "mixtral": ("mixtral", None, False),
    "olmoe": ("olmoe", None, False),  # q/k norms over the whole projection
    "gpt-oss": ("gpt_oss", None, False),  # its own rotary embedding: no RoPE kernel (NOT_FOR)
    "phi3": ("phi3", None, False),  # a fused gate and up: no SwiGLU kernel
    "olmo2": ("olmo2", None, False),  # norms after attention and MLP, q/k norms over the whole projection
    "olmo3-sliding": ("olmo3", None, False),
    "granite": ("granite", None, False),  # its logits scaled: no fused loss (NOT_FOR)
    "lfm2": ("lfm2", None, False),  # convolution layers beside attention; w1, w2, w3: no SwiGLU kernel
    "qwen3-5": ("qwen3_5", None, False),  # Gated DeltaNet layers; mrope: no RoPE kernel
    "gemma4": ("gemma4", None, False),  # Gemma4Text* layers, Gemma4RMSNorm (some without a weight)
    "gemma4-peft-lora": ("gemma4", "lora", False),  # the fused LoRA MLP in Gemma4TextMLP
    # loaded whole: its language model's layers, and the loss in the whole model's forward (Gemma 3's softcaps not)
    "gemma3-vision-language": ("gemma3_vlm", None, False),
    "gemma4-vision-language": ("gemma4_vlm", None, False),
    "qwen3-5-moe": ("qwen3_5_moe", None, False),  # and its experts; a shared expert
}


def quantize_4bit(model) -> None:
    """The decoder's projections as bitsandbytes nf4 Linear4bit layers (fp32 compute), as a QLoRA load makes them."""
    import bitsandbytes as bnb

    for name, module in list(model.named_modules()):
        if type(module) is torch.nn.Linear and name.rsplit(".", 1)[-1] in LORA_TARGETS:
            q = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                                  compute_dtype=torch.float32, quant_type="nf4")
            q.weight = bnb.nn.Params4bit(module.weight.data.clone(), requires_grad=False, quant_type="nf4")
            if module.bias is not None:
                q.bias = torch.nn.Parameter(module.bias.data.clone(), requires_grad=False)
            parent, child = name.rsplit(".", 1)
            setattr(model.get_submodule(parent), child, q.to(DEVICE))
    model.is_loaded_in_4bit = True  # peft wraps Linear4bit layers in its lora.Linear4bit for such models


def tiny(arch: str, lora: str | None, checkpointing: bool, **lora_options):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    # bitsandbytes 0.50.2's CPU dequantization misplaces the blocks of rows whose length is not a multiple of the
    # block size (64): the plain QLoRA model's down projection would be wrong, so its intermediate size is 128 here
    sizes = dict(intermediate_size=128) if lora == "qlora" else {}
    model = AutoModelForCausalLM.from_config(config(arch, **sizes)).to(DEVICE)
    with torch.no_grad():  # norms start at 1 (Gemma: 0); move them, or a norm's weight would test nothing
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    if lora == "qlora":
        quantize_4bit(model)
    if checkpointing:
        model.activation_checkpointing_enable()
    if lora:
        from peft import LoraConfig, get_peft_model

        # init_lora_weights=False: B is random too, so that A's gradient is not zero
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS,
                                                 init_lora_weights=False, **lora_options))
    model.train()
    return model


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def batch_of(vocab: int) -> dict:
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, vocab, (2, 11), generator=g)
    labels = ids.clone()
    labels[0, :4] = -100  # a prompt: not trained
    labels[1, 9:] = -100
    trained = int((labels[:, 1:] != -100).sum())
    return {"input_ids": ids.to(DEVICE), "labels": labels.to(DEVICE),
            "num_items_in_batch": torch.tensor(trained, device=DEVICE)}  # as core.training.Session passes it


@pytest.mark.parametrize("case", list(CASES))
def test_patched_model_trains_exactly_like_the_plain_one(case, calls):
    arch, lora, checkpointing = CASES[case]
    plain = tiny(arch, lora, checkpointing)
    ours = copy.deepcopy(plain)
    report = patch(ours, device=DEVICE)
    whole = (plain.get_base_model() if lora else plain).config
    config = whole.get_text_config()  # a vision-language model loaded whole: its language model's
    skipped, prefix = dict(NOT_FOR.get(config.model_type, {})), ARCHITECTURES[config.model_type][0]
    layers = LAYER_PREFIX.get(config.model_type, prefix)  # (Gemma 4: Gemma4TextMLP, Gemma4TextAttention)

    def count(kind: str, having: str = "") -> int:
        return sum(type(m).__name__ == f"{layers}{kind}" and (not having or hasattr(m, having))
                   for m in plain.modules())

    # a mixture of experts' experts take the kernel as their gated activation (gpt-oss's is its own), beside a
    # shared expert's MLP; Phi-3's and LFM2's MLPs keep other projections
    experts = sum(getattr(m, "has_gate", False) and type(m)._apply_gate is _default_apply_gate for m in plain.modules())
    mlps = 0 if "swiglu" in skipped else count("MLP", "gate_proj") + experts
    attentions = 0 if "rope" in skipped else count("Attention")  # (LFM2, Qwen 3.5: some layers are not attention)
    fused = "cross_entropy" not in skipped
    assert all(report[op].reason == why and not report[op].active for op, why in skipped.items()), report
    assert all(p.active for op, p in report.items() if op not in skipped and op != "lora" and (op != "swiglu" or mlps)
               ), report
    assert report["lora"].active == bool(lora) and (not lora or not report["lora"].reason), report["lora"]
    layers = config.num_hidden_layers
    assert len(report["swiglu"].places) == mlps and len(report["rope"].places) == attentions
    assert mlps or report["swiglu"].reason
    assert len(report["cross_entropy"].places) == fused
    from core import memory_model as mm  # the plan counts the logits as the run computes them
    assert mm.fused_loss(ModelShape.from_config(whole.to_dict()), mm.Setup("lora", 2, 11, fused_loss=True)) == fused

    batch = batch_of(SIZES["vocab_size"])
    loss, grads = loss_and_grads(ours, batch)
    ran = dict(calls)
    plain_loss, plain_grads = loss_and_grads(plain, batch)
    assert calls == ran, "a kernel ran in the unpatched model"
    # (a projector's and a vision tower's run on images alone)
    norms = [p for p in report["rmsnorm"].places if "projector" not in p and "vision" not in p]
    assert ran["rmsnorm"] >= len(norms) and ran["cross_entropy"] == fused
    if attentions:  # (SmolLM3: some layers without rope)
        rotations = ran["rope"] + ran["rope_one"] // 2  # (Gemma 4 rotates queries and keys in separate calls)
        assert rotations >= sum(getattr(config, "no_rope_layers", None) or [1] * attentions), ran
    if lora:  # the fused LoRA MLP (swiglu's kernels inside) in every layer, our LoRA linear in the attention
        assert len(report["lora"].places) == 8 * layers  # 7 projections and the MLP
        assert ran["lora_mlp"] >= layers and ran["lora"] >= 4 * layers and ran["swiglu"] == 0, ran
    else:
        assert ran["swiglu"] >= mlps, ran

    close(loss, plain_loss, 1e-5, "loss")
    assert grads.keys() == plain_grads.keys() and grads
    for name, grad in grads.items():
        close(grad, plain_grads[name], 1e-4, name)
    if lora:
        assert all("lora_" in n for n in grads)

    with torch.no_grad():  # without labels (generation, packing's check): logits as before
        close(ours(input_ids=batch["input_ids"]).logits, plain(input_ids=batch["input_ids"]).logits, 1e-5, "logits")


def test_with_labels_the_loss_comes_without_logits_and_patching_twice_changes_nothing():
    model = tiny("qwen3", None, False)
    batch = batch_of(SIZES["vocab_size"])
    first = patch(model, device=DEVICE)
    loss, _ = loss_and_grads(model, batch)
    assert patch(model, device=DEVICE) == first
    again, _ = loss_and_grads(model, batch)
    assert torch.equal(loss, again)
    assert model(**batch).logits is None


# a frozen tied head; a trained soft-capped one; one in a vision-language model loaded whole
@pytest.mark.parametrize("case", ["llama-peft-lora", "gemma2", "gemma4-vision-language"])
def test_preference_scores_come_from_each_tokens_loss_without_logits(case, calls):
    """A pair objective's scores (core.objectives.pairs.score) in a patched model: each row's answer NLL from our
    kernel's per-token losses, no vocabulary-wide logits; values and gradients (through ORPO's loss, which weighs
    the rows unevenly) as the plain model's logits give them."""
    from core.objectives import get, pairs
    from tuneforge_kernels.patch import gives_token_losses

    plain = tiny(*CASES[case])
    ours = copy.deepcopy(plain)
    patch(ours, device=DEVICE)
    assert gives_token_losses(ours) and not gives_token_losses(plain)
    batch = batch_of(SIZES["vocab_size"])  # row 0: the chosen answer, row 1: the rejected one
    batch = {"input_ids": batch["input_ids"], "labels": batch["labels"],
             "attention_mask": torch.ones_like(batch["input_ids"])}
    batch["attention_mask"][1, 9:] = 0  # padding after the rejected answer
    totals = pairs.Totals(chosen_tokens=pairs.chosen_tokens(batch), pairs=1)
    results = []
    for model in (ours, plain):
        model.zero_grad(set_to_none=True)
        scores = pairs.score(model, batch)
        get("orpo").loss(scores, totals, 0.5)[0].backward()
        results.append((scores.nll.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    assert calls["cross_entropy"] == 1
    (nll, grads), (plain_nll, plain_grads) = results
    close(nll, plain_nll, 1e-5, "answer NLL")
    assert grads.keys() == plain_grads.keys() and grads
    for name, grad in grads.items():
        close(grad, plain_grads[name], 1e-4, name)
    with pytest.raises(ValueError, match="token_losses needs labels"):
        ours(input_ids=batch["input_ids"], token_losses=True)


def test_on_a_cpu_without_the_interpreter_nothing_is_patched(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    model = tiny("llama", None, False)
    report = patch(model, device="cpu")
    assert set(report) == set(OPS)
    assert all(not p.active and p.reason.startswith("no CUDA GPU") for p in report.values()), report
    assert not any("forward" in vars(m) for m in model.modules())


def test_an_unsupported_architecture_is_left_alone_with_the_reason():
    from transformers import AutoModelForCausalLM, GPT2Config

    model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).to(DEVICE)
    report = patch(model, ["rmsnorm", "cross_entropy"], device=DEVICE)
    assert set(report) == {"rmsnorm", "cross_entropy"}
    assert all("gpt2 is not a causal LM of a supported architecture" in p.reason for p in report.values())


def test_a_lora_wrapped_head_keeps_the_plain_loss():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("mistral", None, False), LoraConfig(r=4, target_modules=["lm_head", "q_proj"]))
    report = patch(model, device=DEVICE)
    assert not report["cross_entropy"].active and "not a plain bias-free Linear" in report["cross_entropy"].reason
    assert all(report[op].active for op in ("rmsnorm", "swiglu", "rope"))
    assert model(**batch_of(SIZES["vocab_size"])).logits is not None


def test_a_vision_language_model_whose_forward_we_do_not_know_keeps_its_own_loss(monkeypatch):
    """Only the whole models in WHOLE_MODELS have their forward replaced (their softcapping known); another keeps
    its loss, its language model's layers still take the other kernels, and its plan counts the full logits
    (GOT-OCR2's, a Qwen2 loaded whole, were planned as fused)."""
    from core import memory_model as mm
    from tuneforge_kernels import patch as switch

    monkeypatch.delitem(switch.WHOLE_MODELS, "gemma3")
    model = tiny("gemma3_vlm", None, False)
    report = patch(model, device=DEVICE)
    assert not report["cross_entropy"].active
    assert "gemma3 is a vision-language model loaded whole" in report["cross_entropy"].reason
    assert all(report[op].active for op in ("rmsnorm", "swiglu", "rope"))
    shape, setup = ModelShape.from_config(model.config.to_dict()), mm.Setup("lora", 2, 11, fused_loss=True)
    assert shape.loaded_whole == "gemma3" and not mm.fused_loss(shape, setup)
    assert mm.fused_loss(ModelShape.from_config(model.config.get_text_config().to_dict()), setup)
    assert model(**batch_of(SIZES["vocab_size"])).logits is not None


def test_a_module_whose_forward_another_library_replaced_is_left_alone():
    model = tiny("llama", None, False)
    hooked = model.model.norm
    hooked.forward = lambda x: x  # as accelerate's hooks do
    report = patch(model, ["rmsnorm"], device=DEVICE)["rmsnorm"]
    assert "model.norm" not in report.places and len(report.places) == 2 * SIZES["num_hidden_layers"]
    assert report.reason == "model.norm's forward was already replaced by another library"
    assert hooked.forward(torch.ones(1)) == 1


def test_transformers_hub_kernels_do_not_undo_ours_on_train_or_eval(tmp_path, monkeypatch, calls):
    """transformers 5.25 kernelizes a model it loads (with Hugging Face's `kernels` installed) and again on each
    train()/eval(), which used to put the norms' own forward back: the patch turns that off
    (tuneforge_kernels/patch.py)."""
    from transformers import AutoModelForCausalLM

    tiny("llama", None, False).save_pretrained(tmp_path)
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)  # what a process of ours sets; a library's caller may not
    try:
        model = AutoModelForCausalLM.from_pretrained(tmp_path, use_kernels=True).to(DEVICE)
    except ValueError as e:  # before 5.25 `kernels` was optional: without a version it takes, nothing kernelizes
        pytest.skip(f"this transformers cannot kernelize a model here, so there is nothing to undo: {e}")
    assert model.use_kernels, "this transformers no longer kernelizes at load: the test proves nothing"
    report = patch(model, ["rmsnorm"], device=DEVICE)["rmsnorm"]
    model.eval()
    model.train()
    assert not model.use_kernels
    assert all("forward" in vars(model.get_submodule(place)) for place in report.places)
    loss_and_grads(model, batch_of(SIZES["vocab_size"]))
    assert calls["rmsnorm"] == 2 * SIZES["num_hidden_layers"] + 1


def test_asking_for_nothing_or_for_an_unknown_op():
    model = tiny("llama", None, False)
    assert patch(model, [], device=DEVICE) == {}
    with pytest.raises(ValueError, match="unknown kernel.*layernorm.*known ones are rmsnorm"):
        patch(model, ["layernorm"], device=DEVICE)


@pytest.mark.parametrize("option, why", [(dict(use_dora=True), "DoRA (a LoRA variant) keeps peft's forward"),
                                         (dict(lora_dropout=0.1), "LoRA dropout > 0 keeps peft's forward")],
                         ids=["dora", "dropout"])
def test_lora_layers_the_kernel_does_not_fit_keep_peft_forward_with_the_reason(option, why):
    model = tiny("llama", "lora", False, **option)
    report = patch(model, ["lora"], device=DEVICE)["lora"]
    assert not report.active and report.reason.startswith(why), report
    assert not any("forward" in vars(m) for m in model.modules())


def test_a_disabled_adapter_runs_peft_forward():
    plain = tiny("llama", "lora", False)
    ours = copy.deepcopy(plain)
    patch(ours, ["lora"], device=DEVICE)
    batch = batch_of(SIZES["vocab_size"])
    with torch.no_grad(), ours.disable_adapter(), plain.disable_adapter():
        close(ours(**batch).loss, plain(**batch).loss, 1e-6, "base loss")
    with torch.no_grad():
        close(ours(**batch).loss, plain(**batch).loss, 1e-5, "loss")
