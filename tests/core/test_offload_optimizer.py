"""Trainable state off the GPU (issue 9), on the CPU: the host AdamW (core.offload.host_adam) gives the
same losses as MasterAdamW; state spilled to disk (core.offload.spill) comes back bit for bit; drive
writes are counted per step; activations kept on the host change nothing; a trainer killed while it
spills leaves a checkpoint a new session resumes from. (Resuming on the same trajectory is checked for
the host optimizer, spill included, by the CASES table of tests/core/test_strategies.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from core import checkpoint, history, training
from core.offload.disk import DiskIO
from core.offload.host_adam import HostAdamW
from core.offload.spill import StateSpill
from core.optimizers import master_adamw
from core.run_config import RunConfig
from tests.core.test_strategies import examples, random_llama, run_steps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISA = {"layers": 1, "interval": 1, "embeddings": False}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("two-layers"), 2)


def config(tmp_path, model_dir, run: str, strategy: str, options: dict, **over) -> RunConfig:
    fields = dict(run_id=run, run_dir=str(tmp_path / run), db_path=str(tmp_path / "h.db"), model_path=str(model_dir),
                  data_path="unused", strategy=strategy, strategy_options=options, micro_batch=2, grad_accum=2,
                  lr=3e-3, warmup_ratio=0.0, seed=7, device="cpu", keep_checkpoints=1)
    return RunConfig(**{**fields, **over})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_host_adamw_matches_master_adamw_step_for_step(dtype):
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(33, 17).to(dtype))
    ref = torch.nn.Parameter(ours.detach().clone())
    a = HostAdamW([ours], lr=1e-2, weight_decay=0.1, pool_bytes=1 << 20)
    b = master_adamw()([ref], lr=1e-2, weight_decay=0.1)
    for _ in range(10):
        g = torch.randn(33, 17).to(dtype)
        ours.grad, ref.grad = g.clone(), g.clone()
        a.step()
        b.step()
        assert ours.grad is None  # the host took it
    assert torch.equal(ours, ref)
    assert a.state[ours]["master"].dtype == torch.float32 and a.pool.used == 3 * 4096  # master + moments, 1 page each
    # Its checkpointed state loads into MasterAdamW and back: one format for both.
    b2 = master_adamw()([torch.nn.Parameter(ref.detach().clone())], lr=1e-2, weight_decay=0.1)
    b2.load_state_dict(a.state_dict())
    a.load_state_dict(b.state_dict())
    assert torch.equal(a.state[ours]["exp_avg"], b.state[ref]["exp_avg"])


@pytest.mark.parametrize("strategy,options,over", [
    ("full", {}, {}),  # clipping on (1.0): host updates wait for the global norm
    ("lisa", {"layers": 1, "interval": 2, "embeddings": True}, {"max_grad_norm": 0.0}),  # no clipping: overlapped
])
def test_training_with_the_optimizer_on_the_host_gives_the_same_losses(strategy, options, over, model_dir, tmp_path):
    data = examples(vocab=1000)
    plain = training.Session(config(tmp_path, model_dir, "plain", strategy, options, **over), 4)
    host = training.Session(config(tmp_path, model_dir, "host", strategy, {**options, "optimizer_on_host": True},
                                   **over), 4)
    assert type(host.optimizer).__name__ == "HostAdamW"
    assert run_steps(host, data, 4) == pytest.approx(run_steps(plain, data, 4), abs=1e-6)
    if host.cfg.max_grad_norm:
        assert host.optimizer.last_grad_norm > host.cfg.max_grad_norm  # the clip really cut the gradients
    for (n, p), (_, q) in zip(plain.model.named_parameters(), host.model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


@pytest.mark.parametrize("strategy,options,checkpointing", [
    ("full", {}, False),
    ("lora", {"r": 4, "alpha": 8}, True),  # each checkpointed layer's input goes to RAM too
    ("qlora", {"r": 4, "alpha": 8}, True),
])
def test_activations_kept_on_the_host_give_the_same_losses(strategy, options, checkpointing, model_dir, tmp_path,
                                                            monkeypatch):
    from core.offload import activations

    monkeypatch.setattr(activations, "SMALL", 0)  # this model's layer inputs are small: move every saved tensor
    data = examples(vocab=1000)
    over = {"gradient_checkpointing": checkpointing}
    plain = training.Session(config(tmp_path, model_dir, "a", strategy, options, **over), 3)
    host = training.Session(config(tmp_path, model_dir, "b", strategy, {**options, "activations_on_host": True},
                                   **over), 3)
    assert host.placement["activations"] == "RAM" and plain.placement["activations"] == "RAM"  # (CPU: all RAM)
    assert run_steps(host, data, 3) == pytest.approx(run_steps(plain, data, 3), abs=1e-6)
    acts = host.activations
    assert acts.pool is not None and acts.pool.peak > 0 and acts.overflows == 0  # sized by the first micro-batch
    assert acts.pool.used == 0  # every saved tensor went back once backward was done with it
    weights = sum(p.numel() * p.element_size() for p in host.model.parameters())
    moved = host.io_stats()["activations_moved_bytes"]
    assert 0 < moved < weights  # activations moved, weights stayed
    if checkpointing:  # at least every layer's input (2 layers × 2 rows × the pack's tokens × 64 wide, fp32)
        assert moved >= 2 * 2 * 10 * 64 * 4
        # Backward asks for the layers' inputs going down: each one after the first was already brought back.
        assert acts.prefetched >= 3 * 2 * 2  # steps × micro-batches × (at least) the two layers' inputs


def test_a_tensor_saved_twice_crosses_once_unless_written_in_between(monkeypatch):
    from core.offload import activations

    monkeypatch.setattr(activations, "SMALL", 0)
    acts = activations.HostActivations(torch.nn.Linear(4, 4), "cpu")
    x = torch.randn(8, 4, requires_grad=True)
    with acts():
        y = x.exp()  # exp saves its output, and the product saves it twice more: one copy in all
        (y * y).sum().backward()
    assert acts.moved == y.numel() * 4
    assert torch.allclose(x.grad, 2 * torch.exp(2 * x.detach()))
    with acts():
        t = torch.randn(64)
        before = t.clone()
        first = acts._pack(t)
        assert acts._pack(t) is first  # the same tensor at the same version
        t.add_(1)  # written in between: its new values need their own copy
        second = acts._pack(t)
    assert second is not first and acts.moved == 2 * 64 * 4
    assert torch.equal(acts._unpack(second), t) and torch.equal(acts._unpack(first), before)


def test_spilled_state_round_trips_bit_exactly(tmp_path):
    torch.manual_seed(1)
    spill = StateSpill(tmp_path, DiskIO(workers=2))
    saved = {"a": torch.randn(7, 13), "b": torch.randn(1000).to(torch.bfloat16), "c": torch.randn(3, 4096)}
    for f in spill.put("x", saved):
        f.result()
    back = {k: torch.empty_like(v) for k, v in saved.items()}
    for f in spill.get("x", back):
        f.result()
    assert all(torch.equal(saved[k], back[k]) for k in saved)
    assert spill.file_bytes % 4096 == 0 and spill.path.stat().st_size <= spill.file_bytes

    # Through the optimizer: a layer's state written out when it stops training and read back when it
    # trains again is the same to the last bit, and a checkpoint holds it while it is on disk.
    p = torch.nn.Parameter(torch.randn(64, 48))
    opt = HostAdamW([p], lr=1e-2, pool_bytes=1 << 20, spill=StateSpill(tmp_path / "opt"))
    for _ in range(3):
        p.grad = torch.randn(64, 48)
        opt.step()
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()}
    opt.forget([p])
    assert not opt.state.get(p) and opt.spill.holds(0)
    saved = opt.state_dict()  # as a checkpoint takes it: the spilled state is indexed, and its file copied
    assert opt.pool.used == 0 and not saved["state"] and saved["spilled"][0]["step"] == 3
    opt.spill.save_copy(tmp_path / "checkpoint-copy")
    q = torch.nn.Parameter(p.detach().clone())
    resumed = HostAdamW([q], lr=1e-2, pool_bytes=1 << 20, spill=StateSpill(tmp_path / "resumed"))
    resumed.load_state_dict({**saved, "spill_file": str(tmp_path / "checkpoint-copy")})
    for restored in (opt._state_of(p), resumed._state_of(q)):
        for k, v in before.items():
            assert torch.equal(restored[k], v) if torch.is_tensor(v) else restored[k] == v


def test_drive_writes_are_counted_per_step_and_placement_is_recorded(model_dir, tmp_path):
    cfg = config(tmp_path, model_dir, "wear", "lisa", {**LISA, "optimizer_on_host": True, "spill_state": True})
    session = training.Session(cfg, 8)
    assert session.placement == {"frozen weights": "RAM", "trained weights": "RAM", "optimizer state": "RAM + NVMe",
                                 "activations": "RAM"}
    layer_state = 12 * sum(p.numel() for p in session.model.model.layers[0].parameters())  # master + 2 moments
    data, written = examples(vocab=1000), []
    for step in range(8):
        run_steps(session, data, step + 1)
        written.append(session.io_stats()["written_last_step"])
    assert set(written) <= {0, layer_state} and layer_state in written  # a switched-off layer's state, or nothing
    stats = session.io_stats()
    assert sum(written) == stats["spill_written_bytes"] and stats["spill_file_bytes"] >= layer_state
    session.close()  # the scratch file goes with the run
    assert not (tmp_path / "wear" / "offload" / "optimizer-state.spill").exists()
    assert training.Session(config(tmp_path, model_dir, "none", "lisa", LISA), 8).io_stats() == {}


def test_lisa_on_the_host_keeps_its_pool_use_flat_across_layer_switches(tmp_path):
    """γ=2 of 6 layers, a new pair every step: after each step the pool holds exactly two layers' state
    (fp32 master and two moments), never more, so nothing leaks as layers come and go."""
    six = random_llama(tmp_path / "six", 6)
    cfg = config(tmp_path, six, "flat", "lisa", {"layers": 2, "interval": 1, "embeddings": False,
                                                 "optimizer_on_host": True})
    session = training.Session(cfg, 10)
    layer = sum(4096 * -(-4 * p.numel() // 4096) for p in session.model.model.layers[0].parameters())
    data, used = examples(vocab=1000), set()
    for step in range(10):
        run_steps(session, data, step + 1)
        used.add(session.optimizer.pool.used)
    assert used == {2 * 3 * layer}


def tiny_tokenizer(folder) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "</s>"] + [f"w{i}" for i in range(200)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                            eos_token="</s>").save_pretrained(folder)


def test_a_trainer_killed_while_spilling_leaves_a_checkpoint_that_resumes(model_dir, tmp_path):
    """A real trainer process trains LISA with host state spilled to disk, switching layers (and so
    spilling) every step and checkpointing every step; it is killed without warning mid-run. The last
    checkpoint holds its own finished copy of the spilled state, so a new session resumes from it
    whatever the dead process left in its scratch file."""
    (tmp_path / "model").mkdir()
    for f in model_dir.iterdir():
        (tmp_path / "model" / f.name).symlink_to(f)
    tiny_tokenizer(tmp_path / "model")
    rows = [{"text": " ".join(f"w{(i * 7 + j * 3) % 200}" for j in range(12 + i % 9))} for i in range(40)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(tmp_path, tmp_path / "model", "killed", "lisa", {**LISA, "optimizer_on_host": True,
                                                                    "spill_state": True},
                 data_path=str(tmp_path / "data.jsonl"), max_steps=100000, checkpoint_every=1, keep_checkpoints=2,
                 eval_fraction=0.0, calibrate_after=0, seq_len=32, grad_accum=1, lr=1e-3)
    with history.History(cfg.db_path) as db:
        db.create_run(cfg.run_id, "offload")
    (tmp_path / "run.json").write_text(json.dumps(cfg.__dict__))
    proc = subprocess.Popen([sys.executable, "-m", "core.trainer", str(tmp_path / "run.json")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir, spill = tmp_path / "killed", tmp_path / "killed" / "offload" / "optimizer-state.spill"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        found = checkpoint.latest(run_dir)
        if found is not None and int(found.name.split("-")[1]) >= 4 and spill.exists() and spill.stat().st_size:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stderr.close()

    last = checkpoint.latest(run_dir)
    saved = torch.load(last / "optimizer.pt", weights_only=True)["optimizer"]
    session = training.Session(cfg, 100)
    assert len(saved["state"]) + len(saved["spilled"]) == len(session.params)  # in RAM, and spilled
    assert (last / checkpoint.SPILLED).stat().st_size > 0
    state = session.resume(last)
    assert state["step"] >= 4 and not state.get("optimizer_reset")
    losses = run_steps(session, examples(vocab=200), state["step"] + 2)
    assert len(losses) == 2 and all(0 < x < 20 for x in losses)


def test_a_spill_that_would_fill_the_drive_stops_with_a_sentence_before_writing(tmp_path, monkeypatch):
    from core import errors
    from core.offload import spill as spill_mod

    # The real free space of the test's drive, with the spare raised to all of it: nothing more may be spilled.
    monkeypatch.setattr(spill_mod, "SPARE", shutil.disk_usage(tmp_path).free)
    spill = StateSpill(tmp_path, DiskIO(workers=1))
    with pytest.raises(errors.DiskFull, match="spilling optimizer state needs .* turn spill_state off"):
        spill.put("x", {"master": torch.zeros(1024)})
    assert spill.path.stat().st_size == 0 and not spill.holds("x") and spill.writes == 0


def test_spilled_state_survives_a_resume_with_the_optimizer_on_the_gpu(model_dir, tmp_path):
    """A checkpoint of LISA with host state spilled to disk, resumed with optimizer_on_host=false (a re-plan,
    or a resume with other settings): the GPU optimizer keeps the spilled state until its layer is sampled
    again, and that layer then resumes its moments exactly as the host optimizer would have."""
    data, spilling = examples(vocab=1000), {**LISA, "optimizer_on_host": True, "spill_state": True}
    first = training.Session(config(tmp_path, model_dir, "spilled", "lisa", spilling), 8)
    run_steps(first, data, 4)  # seed 7 samples layers 0, 0, 0, 1, then 0 again
    assert first.model.tuneforge_lisa.active == [1] and first.optimizer.spill.holds(0)
    saved = first.save_checkpoint(first.cfg.run_dir, {})
    first.close()

    host = training.Session(config(tmp_path, model_dir, "spilled", "lisa", spilling), 8)
    gpu = training.Session(config(tmp_path, model_dir, "spilled", "lisa", {**LISA, "optimizer_on_host": False}), 8)
    assert type(gpu.optimizer).__name__ == "MasterAdamW"
    for session in (host, gpu):
        assert not session.resume(saved).get("optimizer_reset")
    assert gpu.optimizer.state_dict()["spilled"].keys() == {0, 1, 2, 3, 4, 5, 6, 7, 8}  # a checkpoint keeps it too
    assert run_steps(gpu, data, 5) == run_steps(host, data, 5)  # step 4 trains layer 0 again, from its spilled state
    assert gpu.optimizer.spill is None and not (tmp_path / "spilled" / "offload" / "optimizer-state.spill").exists()
    for p, q in zip(host.model.model.layers[0].parameters(), gpu.model.model.layers[0].parameters()):
        ours, theirs = host.optimizer.state[p], gpu.optimizer.state[q]
        assert ours["step"] == theirs["step"] == 4 and torch.equal(ours["exp_avg_sq"], theirs["exp_avg_sq"])
        assert torch.equal(p, q)
    host.close()
    gpu.close()


def test_a_gpu_optimizer_checkpoint_resumes_into_the_host_optimizer_with_a_spill(model_dir, tmp_path):
    """The other way: MasterAdamW's checkpoint loaded by the host optimizer with spill_state. The state of
    the layer that was training goes to the spill file (no layer is active before the first step) and comes
    back when that layer is sampled again; the GPU optimizer, which drops state at a switch, starts it afresh."""
    data, spilling = examples(vocab=1000), {**LISA, "optimizer_on_host": True, "spill_state": True}
    first = training.Session(config(tmp_path, model_dir, "gpu", "lisa", LISA), 8)
    run_steps(first, data, 4)  # layers 0, 0, 0, 1: layer 1 holds state, layer 0's was dropped
    saved = first.save_checkpoint(first.cfg.run_dir, {})
    gpu = training.Session(config(tmp_path, model_dir, "gpu", "lisa", LISA), 8)
    host = training.Session(config(tmp_path, model_dir, "gpu", "lisa", spilling), 8)
    for session in (host, gpu):
        assert not session.resume(saved).get("optimizer_reset")
    assert host.optimizer.spill.holds(9)  # layer 1's first tensor: spilled at load, it is not training now
    # Steps 4 and 5 train layer 0 from nothing in both; step 6 trains layer 1, whose moments only the spill kept.
    assert run_steps(gpu, data, 7) == run_steps(host, data, 7)
    ours, theirs = (next(s.model.model.layers[1].parameters()) for s in (host, gpu))
    assert host.optimizer.state[ours]["step"] == 2 and gpu.optimizer.state[theirs]["step"] == 1
    host.close()
