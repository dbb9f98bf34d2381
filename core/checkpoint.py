"""Resumable checkpoints, written atomically into the run's folder.

A checkpoint is a folder `checkpoints/step-000050/` holding the trained parameters
(`trainable.safetensors`), the optimizer and scheduler state (`optimizer.pt`, tensors only, read
back with weights_only=True), the RNG states and `state.json`; with optimizer state spilled to disk
(LISA's `spill_state`), also a copy of the spill file, which `optimizer.pt` indexes. It is assembled under a temporary
name and renamed, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from core import atomic
from core.errors import KnownError

DIR = "checkpoints"
SPILLED = "spilled-optimizer-state.bin"  # a copy of the run's spill file, indexed by optimizer.pt's "spilled"


def save(run_dir: Path, step: int, params: dict, optimizer, scheduler, state: dict, keep: int = 1) -> Path:
    """`params`: name → every parameter the run may have changed (not only those requiring grad now). The `keep`
    newest checkpoints stay; older ones are deleted once this one is whole (the crash rule above)."""
    import torch
    from safetensors.torch import save_file

    target = Path(run_dir) / DIR / f"step-{step:06d}"
    trainable = {n: p.detach().to("cpu").contiguous() for n, p in params.items()}
    with atomic.folder(target, replace=True) as tmp:
        save_file(trainable, str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        spill = getattr(optimizer, "spill", None)  # optimizer state spilled to disk (core.offload.spill)
        if spill is not None:
            spill.save_copy(tmp / SPILLED)
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step, "trained": list(params)}, indent=2))
    folder = Path(run_dir) / DIR
    # the older checkpoints, and any half-written one a killed trainer left (atomic.folder's temporary name)
    for old in sorted(folder.glob("step-*"))[:-keep] + list(folder.glob(".step-*.tmp")):
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest(run_dir: Path) -> Path | None:
    found = sorted(p for p in (Path(run_dir) / DIR).glob("step-*") if (p / "state.json").is_file())
    return found[-1] if found else None


def load(path: Path, params: dict, optimizer, scheduler, model_params: dict | None = None) -> dict:
    """Restore a checkpoint into `params` (the trained ones, by name) and the optimizer, schedule and RNG.

    After a re-plan that changed what trains (LISA freezing its embeddings), a saved weight may belong
    to the model but no longer train: it is restored through `model_params`, and the optimizer, whose
    state was for another set of weights, starts fresh (state["optimizer_reset"] says so)."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    everything = {**(model_params or {}), **params}
    with torch.no_grad():
        for name, value in weights.items():
            if name not in everything:
                raise KnownError(f"{path}: the checkpoint holds '{name}', which this model does not have; it was "
                                 "saved for another model or strategy, so start a new run.")
            everything[name].copy_(value)
    state = json.loads((path / "state.json").read_text())
    opt = torch.load(path / "optimizer.pt", weights_only=True)
    if state.get("trained", list(params)) == list(params):
        if opt["optimizer"].get("spilled"):
            opt["optimizer"]["spill_file"] = str(path / SPILLED)
            # where an optimizer without a spill of its own (the GPU one) keeps its scratch copy: the run's
            # "offload" folder, as core.strategies.full.host_optimizer's spill
            opt["optimizer"]["spill_folder"] = str(Path(path).parent.parent / "offload")
        optimizer.load_state_dict(opt["optimizer"])
    else:
        state["optimizer_reset"] = True
    scheduler.load_state_dict(opt["scheduler"])
    _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return state


def _rng_state() -> dict:
    import torch

    state = {"torch": torch.get_rng_state(), "python": torch.tensor(list(_python_state()), dtype=torch.int64)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _python_state():
    version, internal, gauss = random.getstate()
    return [version, *internal, -1 if gauss is None else 1]


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    values = state["python"].tolist()
    random.setstate((values[0], tuple(values[1:-1]), None))
