"""Every strategy, one table (STYLE §9), on a tiny random Llama on the CPU, driven through the same
core.training.Session the trainer runs: the loss falls; exactly the intended parameters change; a run
stopped and resumed from its checkpoint continues the same trajectory as one that never stopped; the
saved result loads for inference and answers exactly as the trained model did."""

from __future__ import annotations

import os
import random

import pytest
import torch

from core import checkpoint, strategies, training
from core.data.tokenize import IGNORE, Encoded, collate
from core.errors import BadArgument, NotBuiltYet
from core.run_config import RunConfig

STEPS, STOP_AT = 6, 3


def lora_only(name: str) -> bool:
    return "lora_" in name


# case → (strategy, its settings, learning rate, which changed parameter names are allowed)
CASES = {
    "lora": ("lora", {"r": 4, "alpha": 8}, 1e-2, lora_only),
    "lora-rslora-dropout": ("lora", {"r": 4, "rslora": True, "dropout": 0.1}, 1e-2, lora_only),
    "qlora": ("qlora", {"r": 4, "alpha": 8}, 1e-2, lora_only),
    "dora": ("dora", {"r": 4, "alpha": 8}, 1e-2, lora_only),
    "offload": ("offload", {"r": 4, "alpha": 8, "stream": "always", "where": "ram"}, 1e-2, lora_only),  # CPU streams
    "lisa": ("lisa", {"layers": 1, "interval": 2, "embeddings": False}, 3e-3, None),  # None: checked per window
    "lisa-embeddings-owlore": ("lisa", {"layers": 1, "interval": 2, "sampling": "owlore"}, 3e-3, None),
    # Resumed at a window's boundary (STOP_AT=3), with layer 0 sampled again after layer 1: its old state must
    # not survive the resume, as it did not survive the switch in the run that never stopped.
    "lisa-every-step": ("lisa", {"layers": 1, "interval": 1, "embeddings": False}, 3e-3, None),
    "lisa-host-spill": ("lisa", {"layers": 1, "interval": 1, "embeddings": False, "optimizer_on_host": True,
                                 "spill_state": True}, 3e-3, None),  # resumes at a switch: state back from disk
    # The layers not training stream from RAM (on the CPU too): switched every step, so trained layers go back.
    "lisa-streamed": ("lisa", {"layers": 1, "interval": 1, "embeddings": False, "stream_frozen": True}, 3e-3, None),
    "full": ("full", {}, 3e-3, lambda n: True),
    "full-host": ("full", {"optimizer_on_host": True, "activations_on_host": True}, 3e-3, lambda n: True),
    "full-adamw8bit": ("full", {"optimizer": "adamw8bit"}, 3e-3, lambda n: True),
    "full-adafactor": ("full", {"optimizer": "adafactor"}, 3e-2, lambda n: True),
    # A new subspace every 2 steps: the resume at STOP_AT=3 goes on with the projector the checkpoint kept.
    "full-galore": ("full", {"optimizer": "galore", "galore_rank": 8, "galore_every": 2}, 3e-3, lambda n: True),
    "full-frugal": ("full", {"optimizer": "frugal", "galore_rank": 8, "galore_every": 2}, 3e-3, lambda n: True),
}


def random_llama(folder, layers: int):
    """A random Llama with tied embeddings; 64 wide, the least bitsandbytes' 4-bit CPU inference takes."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("two-layers"), 2)


@pytest.fixture(scope="module")
def six_layer_model(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("six-layers"), 6)


def test_every_built_strategy_has_a_case():
    assert {s for s, *_ in CASES.values()} == {n for n, s in strategies.REGISTRY.items() if s.built}


def examples(vocab: int, n: int = 8, seed: int = 0) -> list[Encoded]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.randrange(3, vocab) for _ in range(rng.randrange(10, 17))]
        half = len(ids) // 2  # the first half is the "prompt": not trained, as with chat data
        out.append(Encoded(ids, [IGNORE] * half + ids[half:], False, "test"))
    return out


def config(tmp_path, model_dir, case: str, run: str, **over) -> RunConfig:
    name, options, lr, _ = CASES[case]
    fields = dict(run_id=run, run_dir=str(tmp_path / run), db_path=str(tmp_path / "h.db"), model_path=str(model_dir),
                  data_path="unused", strategy=name, strategy_options=options, micro_batch=2, grad_accum=2, lr=lr,
                  warmup_ratio=0.0, seed=7, device="cpu", keep_checkpoints=1)
    return RunConfig(**{**fields, **over})


def run_steps(session: training.Session, data: list[Encoded], until: int, notes: list | None = None) -> list[float]:
    losses = []
    while session.step_index < until:
        idx = training.batches_for_step(session.step_index, session.cfg, len(data))
        loss, _, note = session.step([collate([data[i] for i in b], pad_id=0) for b in idx])
        losses.append(loss)
        if notes is not None:
            notes.append((session.step_index, note, list(getattr(session.model, "tuneforge_lisa", None).active)
                          if hasattr(session.model, "tuneforge_lisa") else None))
    return losses


def snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_strategy_trains_its_parameters_resumes_exactly_and_reloads(case, model_dir, tmp_path):
    name, options, _, allowed = CASES[case]
    data = examples(vocab=1000)

    # One run that never stops.
    straight = training.Session(config(tmp_path, model_dir, case, "straight"), STEPS)
    before = snapshot(straight.model)
    notes: list = []
    losses = run_steps(straight, data, STEPS, notes)
    assert losses[-1] < losses[0], losses

    changed = {n for n, p in straight.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed
    if allowed is None:  # LISA: only layers that were sampled (and the embeddings when asked) may change
        sampled = {i for _, _, active in notes for i in active}
        with_embeddings = straight.options.embeddings
        for n in changed:
            layer = int(n.split(".layers.")[1].split(".")[0]) if ".layers." in n else None
            assert (layer in sampled) if layer is not None else with_embeddings, n
    else:
        assert all(allowed(n) for n in changed), sorted(n for n in changed if not allowed(n))
        trainable = {n for n, p in straight.model.named_parameters() if p.requires_grad}
        assert changed == trainable

    # The same run stopped after STOP_AT steps and resumed in a fresh session from its checkpoint.
    cfg = config(tmp_path, model_dir, case, "stopped")
    first = training.Session(cfg, STEPS)
    head = run_steps(first, data, STOP_AT)
    first.save_checkpoint(cfg.run_dir, {"best_loss": min(head)})
    del first
    second = training.Session(cfg, STEPS)
    assert second.resume(checkpoint.latest(cfg.run_dir))["step"] == STOP_AT
    tail = run_steps(second, data, STEPS)
    assert head + tail == pytest.approx(losses, abs=1e-6)
    for (n, p), (_, q) in zip(straight.model.named_parameters(), second.model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n

    # The saved result loads for inference and gives the trained model's logits.
    straight.save_result(tmp_path / "result")
    base = straight.strategy.load_model(model_dir, torch.float32, "cpu", straight.options)
    reloaded = straight.strategy.load(base, tmp_path / "result").eval()
    straight.model.eval()
    x = torch.tensor([data[0].input_ids])
    with torch.no_grad():
        assert torch.allclose(straight.model(input_ids=x).logits, reloaded(input_ids=x).logits, atol=1e-5)


def test_lisa_keeps_optimizer_state_flat_across_layer_switches(six_layer_model, tmp_path):
    """γ=2 of 6 layers, a new pair every step for 15 steps: the live state is always exactly two layers'
    worth of Adam moments, never the sum of every layer ever sampled."""
    from core import optimizers

    cfg = config(tmp_path, six_layer_model, "lisa", "flat", strategy_options={"layers": 2, "interval": 1,
                                                                             "embeddings": False})
    session = training.Session(cfg, 15)
    data = examples(vocab=1000)
    layer_params = sum(p.numel() for p in session.model.model.layers[0].parameters())
    sizes, active_sets = [], []
    for step in range(15):
        run_steps(session, data, step + 1)
        sizes.append(optimizers.state_bytes(session.optimizer))
        active_sets.append(tuple(session.model.tuneforge_lisa.active))
        trainable = {i for i, layer in enumerate(session.model.model.layers)
                     if any(p.requires_grad for p in layer.parameters())}
        assert trainable == set(active_sets[-1])
    assert len(set(active_sets)) >= 5 and len({i for s in active_sets for i in s}) == 6
    # Two fp32 moments of two layers (fp32 weights on the CPU need no separate master); the step counters
    # are plain ints.
    assert set(sizes) == {2 * layer_params * 2 * 4}


def test_lisa_backward_stops_below_the_lowest_active_layer(six_layer_model, tmp_path):
    """With the embeddings frozen, nothing below the lowest sampled layer requires grad, even with
    gradient checkpointing (whose input-grad hook LISA removes)."""
    cfg = config(tmp_path, six_layer_model, "lisa", "stop", gradient_checkpointing=True,
                 strategy_options={"layers": 1, "interval": 1, "embeddings": False})
    session = training.Session(cfg, 4)
    session.strategy.before_step(0, session.model, session.optimizer, session.options, cfg)
    lowest = session.model.tuneforge_lisa.active[0]
    needs_grad = {}
    hooks = [layer.register_forward_hook(lambda m, args, out, i=i: needs_grad.__setitem__(
        i, (out[0] if isinstance(out, tuple) else out).requires_grad)) for i, layer in
        enumerate(session.model.model.layers)]
    session.model(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss.backward()
    for h in hooks:
        h.remove()
    assert needs_grad == {i: i >= lowest for i in range(6)}


def test_owlore_samples_layers_with_more_outliers_more_often(six_layer_model):
    from transformers import AutoModelForCausalLM

    from core.strategies.lisa import LayerSampler, LisaOptions, decoder_layers, outlier_ratios

    model = AutoModelForCausalLM.from_pretrained(six_layer_model)
    layers = decoder_layers(model)
    with torch.no_grad():  # plant outliers in layer 4
        w = layers[4].mlp.down_proj.weight
        w.view(-1)[::7] *= 40
    ratios = outlier_ratios(layers, 5.0)
    assert max(range(6), key=ratios.__getitem__) == 4
    sampler = LayerSampler(layers, [], ratios, LisaOptions(layers=1, sampling="owlore"), seed=1)
    picks = [sampler.pick(w)[0] for w in range(200)]
    assert picks.count(4) > 200 / 6 * 2
    assert sampler.pick(17) == sampler.pick(17)  # a pure function of (seed, window): resume trains the same layers


def test_master_adamw_matches_torch_adamw_and_keeps_small_updates_in_bf16():
    from core.optimizers import master_adamw

    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(40, 30))
    ref = torch.nn.Parameter(ours.detach().clone())
    a = master_adamw()([ours], lr=1e-2, weight_decay=0.1)
    b = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.1)
    for _ in range(20):
        g = torch.randn(40, 30)
        ours.grad, ref.grad = g.clone(), g.clone()
        a.step()
        b.step()
    assert torch.allclose(ours, ref, atol=1e-6)

    # bf16 weights: 300 updates of 1e-5 each move the fp32 master, and with it the bf16 weight, by about
    # 3e-3; plain AdamW on the bf16 weight loses every one of them to rounding (0.5 in bf16 has steps of 2^-8).
    start = torch.full((64,), 0.5, dtype=torch.bfloat16)
    ours, plain = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    a, b = master_adamw()([ours], lr=1e-5), torch.optim.AdamW([plain], lr=1e-5, weight_decay=0.0)
    for _ in range(300):
        ours.grad = torch.ones(64, dtype=torch.bfloat16)
        plain.grad = torch.ones(64, dtype=torch.bfloat16)
        a.step()
        b.step()
    assert torch.equal(plain, start)
    assert float((start.float() - ours.detach().float()).mean()) == pytest.approx(3e-3, rel=0.35)
    state = a.state_dict()
    a.load_state_dict(state)
    assert a.state[ours]["master"].dtype == torch.float32  # torch's own load would have cast it to bf16


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_master_adamw_updates_a_big_tensor_in_rows_exactly_as_whole(dtype, monkeypatch):
    from core import optimizers

    torch.manual_seed(0)
    whole = torch.nn.Parameter(torch.randn(37, 11).to(dtype))
    rows = torch.nn.Parameter(whole.detach().clone())
    a = optimizers.master_adamw()([whole], lr=1e-2, weight_decay=0.1)
    b = optimizers.master_adamw()([rows], lr=1e-2, weight_decay=0.1)
    for _ in range(4):
        whole.grad = torch.randn(37, 11).to(dtype)
        rows.grad = whole.grad.clone()
        a.step()
        monkeypatch.setattr(optimizers, "CHUNK_ELEMENTS", 50)  # rows of 4 at a time
        b.step()
        monkeypatch.undo()
    assert len(optimizers.parts(torch.empty(37, 11))) == 1
    assert torch.equal(whole, rows) and b.state[rows]["step"] == 4
    assert all(torch.equal(a.state[whole][k], b.state[rows][k]) for k in a.state[whole] if k != "step")


def test_a_planned_strategy_is_listed_but_refuses_to_run(monkeypatch):
    """Every strategy is built today; one registered as planned (built=False) may be planned, never run."""
    class Planned(strategies.Strategy):
        name, summary, built = "planned-test", "a strategy that is only planned", False

    monkeypatch.setitem(strategies.REGISTRY, Planned.name, Planned())
    assert strategies.get(Planned.name, need_built=False).summary == Planned.summary
    with pytest.raises(NotBuiltYet, match="not built yet"):
        strategies.get(Planned.name)


@pytest.mark.parametrize("strategy,values,message", [
    ("lora", {"rank": 8}, "unknown setting"),
    ("lora", {"r": 0}, "'r': must be at least 1"),
    ("lisa", {"sampling": "random"}, "'sampling': must be one of uniform, owlore"),
    ("full", {"optimizer": "sgd"}, "'optimizer'"),
    ("qlora", {"quant_type": "int4"}, "'quant_type'"),
    ("qlora", {"optimizer": "galore"}, "'optimizer': must be auto or one of"),  # GaLore projects base weights
    ("full", {"optimizer": "galore", "galore_rank": 0}, "'galore_rank': must be at least 1"),
])
def test_bad_settings_name_the_setting(strategy, values, message):
    with pytest.raises(BadArgument, match=message):
        strategies.get(strategy).options(values)


def test_command_line_settings_are_typed_by_the_strategy():
    assert strategies.parse_option("lisa", "layers=4") == ("layers", 4)
    assert strategies.parse_option("lora", "rslora=yes") == ("rslora", True)
    assert strategies.parse_option(None, "r=8") == ("r", 8)  # no strategy: typed by one that has it
    with pytest.raises(BadArgument, match="layers takes a whole number"):
        strategies.parse_option("lisa", "layers=many")
    with pytest.raises(BadArgument, match="expected NAME=VALUE"):
        strategies.parse_option("full", "r=8")


def test_every_setting_has_help():
    for name in strategies.REGISTRY:
        for option in strategies.describe_options(name):
            assert len(option["help"]) > 10, (name, option["name"])


@pytest.mark.parametrize("name,values,needs", [
    ("lora", {}, False), ("dora", {}, False), ("lisa", {}, False), ("full", {}, False),
    ("full", {"optimizer": "adamw8bit"}, True), ("full", {"optimizer": "adafactor"}, False),
    ("qlora", {}, True), ("offload", {}, True),
])
def test_only_runs_that_use_bitsandbytes_import_it(name, values, needs):
    """The trainer leaves bitsandbytes out of a run that needs neither its 4-bit base nor its 8-bit optimizers
    (every e2e run of each strategy shows that such a run still trains, and that the others still load it)."""
    s = strategies.get(name, need_built=False)
    assert s.uses_bitsandbytes(s.options(values), "cpu") is needs


def test_what_a_run_going_on_keeps_is_settings_of_the_strategy():
    for name, s in strategies.REGISTRY.items():
        fields = {o["name"] for o in strategies.describe_options(name)}
        assert set(s.kept_going_on) <= fields, name
        assert ("r" in s.kept_going_on) == (s.result == "adapter"), name  # an adapter's shape is kept


def test_a_re_plan_that_freezes_lisas_embeddings_resumes_from_the_checkpoint(model_dir, tmp_path):
    """After an out-of-memory re-plan a LISA run may continue with its embeddings frozen: the trained
    embeddings come back from the checkpoint, and the optimizer (whose state was for other weights) starts
    afresh instead of failing."""
    data = examples(vocab=1000)
    cfg = config(tmp_path, model_dir, "lisa-embeddings-owlore", "before")
    first = training.Session(cfg, STEPS)
    run_steps(first, data, STOP_AT)
    first.save_checkpoint(cfg.run_dir, {})
    embedding = first.model.get_input_embeddings().weight.detach().clone()
    frozen = config(tmp_path, model_dir, "lisa", "before")  # same run folder, embeddings off now
    second = training.Session(frozen, STEPS)
    state = second.resume(checkpoint.latest(cfg.run_dir))
    assert state["optimizer_reset"] is True and state["step"] == STOP_AT
    assert torch.equal(second.model.get_input_embeddings().weight, embedding)
    losses = run_steps(second, data, STEPS)
    assert len(losses) == STEPS - STOP_AT and all(0 < x < 20 for x in losses)
    assert torch.equal(second.model.get_input_embeddings().weight, embedding)  # frozen from here on


def test_a_checkpoint_of_another_model_is_refused_in_a_sentence(model_dir, six_layer_model, tmp_path):
    from core.errors import KnownError

    cfg = config(tmp_path, six_layer_model, "full", "six")
    six = training.Session(cfg, STEPS)
    six.save_checkpoint(cfg.run_dir, {})
    two = training.Session(config(tmp_path, model_dir, "full", "two"), STEPS)
    with pytest.raises(KnownError, match="this model does not have"):
        two.resume(checkpoint.latest(cfg.run_dir))


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's list of mapped files")
def test_qlora_on_the_cpu_lets_the_checkpoint_file_go(tmp_path):
    """The checkpoint is stored in fp32, the CPU's precision: LoRA's weights are the mapped file itself, while
    QLoRA copies the few weights it keeps in full precision, so the file (and the pages its 4-bit conversion read)
    is no longer mapped."""
    import gc
    import warnings

    model_dir = random_llama(tmp_path / "fp32", 1)  # its own file: no other test's model has it mapped

    def mapped() -> bool:
        return any(str(model_dir) in line for line in open("/proc/self/maps"))

    gc.collect()
    assert not mapped()
    lora = strategies.get("lora")
    model = lora.load_model(model_dir, torch.float32, torch.device("cpu"), lora.options({}))
    assert mapped()  # the mechanism this guards against: full-precision weights are views of the file
    del model
    gc.collect()
    qlora = strategies.get("qlora")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bitsandbytes' notes about its CPU kernels
        model = qlora.load_model(model_dir, torch.float32, torch.device("cpu"), qlora.options({}))
    gc.collect()
    assert not mapped()
    assert any(type(p).__name__ == "Params4bit" for p in model.parameters())
