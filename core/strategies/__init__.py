"""Training strategies, one file each, registered here (STYLE §9).

A Strategy says how to make a model trainable (`prepare`), how to write what was learned in a
loadable layout (`save`), and how to apply a saved result to the base model for inference (`load`).
Strategies that are planned but not built yet are listed with built=False: the planner may name
them, the trainer refuses them with a sentence, and nothing silently runs something else instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.errors import BadArgument, NotBuiltYet


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str  # one line for lists and plans
    built: bool
    result: str = "adapter"  # "adapter" (PEFT layout) or "model" (a full HF folder)
    prepare: Callable | None = None  # (model, RunConfig) -> model with exactly the trained params requiring grad
    save: Callable | None = None  # (model, folder) -> None
    load: Callable | None = None  # (base_model, folder) -> model ready for inference


REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    REGISTRY[strategy.name] = strategy
    return strategy


def get(name: str, need_built: bool = True) -> Strategy:
    if name not in REGISTRY:
        raise BadArgument(f"Unknown strategy '{name}'; choose one of {', '.join(REGISTRY)}.")
    s = REGISTRY[name]
    if need_built and not s.built:
        built = ", ".join(n for n, x in REGISTRY.items() if x.built)
        raise NotBuiltYet(f"The '{name}' strategy is planned but not built yet; use one of {built} for now.")
    return s


from core.strategies import full, lora, planned  # noqa: E402,F401  (registers them)
