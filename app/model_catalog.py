"""The models on this machine to pick from, each with the planner's answer to "will it fit here?".

The answer is a plan for a typical dataset, not the person's own (that is planned on the Plan step):
ROWS rows of ROW_TOKENS tokens each. The time is scaled to 1,000 such rows, so models compare at a
glance. Nothing is loaded or downloaded: shapes come from config.json or a GGUF header.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from app import operations as ops
from app import paths
from core import model_listing, planner
from core.errors import KnownError
from core.hardware import HardwareProfile
from core.model_listing import ModelEntry
from core.progress import Progress
from core.words import duration

GIB = 1024**3
ROWS, ROW_TOKENS = 300, 512
ASSUMPTION = (f"“Fits this machine” is the planner's answer for a typical dataset of {ROWS} rows of {ROW_TOKENS} "
              "tokens, with the time per 1,000 such rows; your own data is planned on the Plan step.")
RECENT = 5  # models from the history shown besides those found on disk


@dataclass(frozen=True)
class CatalogEntry:
    model: ModelEntry
    fit: str  # a short phrase: "fits: LoRA on the GPU, about 12 min per 1,000 rows"
    level: str  # "good", "slow", "no" or "unknown", for colouring the phrase


def list_models(current: str = "", progress: Progress | None = None,
                hardware_file: str | None = None) -> list[CatalogEntry]:
    """The bundled default first, converted GGUFs, the HF cache's models, then `current` and models used in
    earlier runs when they are elsewhere; each with the planner's fit for this machine (or `hardware_file`)."""
    progress = progress or Progress()
    found = model_listing.list_models(paths.models_dir(), progress)
    progress.update(None, "Adding models used before")
    for name in dict.fromkeys([current.strip(), *_recent_names()]):
        known = {e.name for e in found} | {e.path for e in found if e.path}
        if not name or name in known:
            continue
        entry = model_listing.describe(name, paths.models_dir())
        if entry.path and entry.path in known:  # the same model under another name (a converted .gguf)
            continue
        found.append(entry if name == current.strip() else replace(entry, source="recent"))
    progress.update(None, "Asking the planner what fits this machine")
    try:
        hardware = ops.machine_profile(hardware_file)
    except KnownError as e:  # the list still helps without the fit answer
        return [CatalogEntry(entry, f"unknown: {e}", "unknown") for entry in found]
    answers = []
    for entry in found:
        progress.update(None, "Asking the planner what fits this machine")  # lets a closed page cancel
        if entry.problem and entry.config is not None:  # (its config fetched alone): whether it is worth the rest
            answers.append(CatalogEntry(entry, f"{entry.problem}; once whole, {fit_answer(hardware, entry.config)[0]}",
                                        "no"))
        elif entry.problem:  # nothing to plan with
            answers.append(CatalogEntry(entry, entry.problem, "no"))
        else:
            answers.append(CatalogEntry(entry, *fit_answer(hardware, entry.config)))
    return answers


def _recent_names() -> list[str]:
    """The model names of the latest runs, newest first (cheap: one query)."""
    with ops.open_history() as db:
        names = [run.get("model") for run in db.runs()]
    return [n for n in dict.fromkeys(names) if n][:RECENT]


def fit_answer(hardware: HardwareProfile, config: dict | None) -> tuple[str, str]:
    """(phrase, level) from the plan the planner makes for a typical dataset on `hardware`."""
    if config is None:
        return "unknown: its shape could not be read", "unknown"
    try:
        plan = planner.make_plan(hardware, config, [ROW_TOKENS] * ROWS)
    except (KnownError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        return f"unknown: the planner could not plan for it ({e})", "unknown"
    seconds = plan.total_time_s * 1000 / ROWS
    per_1000 = f"{'about ' if seconds >= 1 else ''}{duration(seconds)} per 1,000 rows"
    not_built = "" if plan.strategy_built else f"; {plan.strategy} is not built yet"
    if not plan.fits:
        need, offers, where = sum(plan.memory.values()), plan.memory_limit, "GPU memory"
        if plan.device != "cuda":  # on the CPU the training device's memory is the RAM
            where = "RAM"
        elif plan.ram_limit and sum(plan.ram.values()) > plan.ram_limit:
            need, offers, where = sum(plan.ram.values()), plan.ram_limit, "RAM"
        return (f"does not fit this machine: needs about {need / GIB:.0f} GiB of {where}, "
                f"{offers / GIB:.0f} GiB available", "no")
    if plan.device != "cuda":
        how = " (QLoRA, 4-bit)" if plan.strategy == "qlora" else ""
        return f"CPU only{how}: slow, {per_1000}{not_built}", "slow"
    if "weights" in plan.offload or "frozen layers" in plan.offload:
        source = "disk" if "disk" in plan.offload else "RAM"
        return f"only with weights streamed from {source} (slow), {per_1000}{not_built}", "slow"
    if "optimizer" in plan.offload:
        return f"only with the optimizer state in RAM (slower), {per_1000}{not_built}", "slow"
    moved = ", activations in RAM" if plan.offload else ""  # what is left to move: activations, a small cost
    if plan.strategy == "qlora":
        return f"fits with QLoRA (4-bit){moved}, {per_1000}{not_built}", "good"
    name = "LoRA" if plan.strategy == "lora" else plan.strategy
    return f"fits: {name} on the GPU{moved}, {per_1000}{not_built}", "good"

