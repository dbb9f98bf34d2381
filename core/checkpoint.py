"""Resumable checkpoints, written atomically into the run's folder.

A checkpoint is a folder `checkpoints/step-000050/` holding the trained parameters
(`trainable.safetensors`), the optimizer and scheduler state (`optimizer.pt`, tensors only, read
back with weights_only=True), the RNG states and `state.json`. It is assembled under a temporary
name and renamed, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from core import atomic

DIR = "checkpoints"


def save(run_dir: Path, step: int, params: dict, optimizer, scheduler, state: dict, keep: int = 2) -> Path:
    """`params`: name → every parameter the run may have changed (not only those requiring grad now)."""
    import torch
    from safetensors.torch import save_file

    target = Path(run_dir) / DIR / f"step-{step:06d}"
    trainable = {n: p.detach().to("cpu").contiguous() for n, p in params.items()}
    with atomic.folder(target, replace=True) as tmp:
        save_file(trainable, str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    for old in sorted((Path(run_dir) / DIR).glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest(run_dir: Path) -> Path | None:
    found = sorted(p for p in (Path(run_dir) / DIR).glob("step-*") if (p / "state.json").is_file())
    return found[-1] if found else None


def load(path: Path, params: dict, optimizer, scheduler) -> dict:
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    opt = torch.load(path / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return json.loads((path / "state.json").read_text())


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
