"""The golden table: the plan for every shipped hardware profile × model config, checked in as
`golden_plans.md` and read by eye in review. A change to the planner or the memory model that moves
any plan fails here until the table is regenerated:

    .venv/bin/python -m tests.core.test_golden_plans      # rewrites golden_plans.md

The public reference points the table must agree with are asserted separately below.
"""

import json
import sys
from pathlib import Path

from core import hardware
from core import memory_model as mm
from core import plan_text, planner
from core.model_shape import ModelShape

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden_plans.md")
GB = 1e9
GIB = 1024**3
# A typical chat dataset: 1,000 rows from 64 to 512 tokens (deterministic).
CHAT_LENGTHS = [64 + (i * 37) % 449 for i in range(1000)]
SHORT_LENGTHS = [64 + (i * 37) % 193 for i in range(1000)]  # up to 256 tokens


def model(name: str) -> dict:
    return json.loads((REPO / "resources" / "models" / f"{name}.json").read_text())


def profile(name: str) -> hardware.HardwareProfile:
    return hardware.load(REPO / "resources" / "hardware" / f"{name}.json")


def render() -> str:
    profiles = sorted(p.stem for p in (REPO / "resources" / "hardware").glob("*.json"))
    models = sorted((p.stem for p in (REPO / "resources" / "models").glob("*.json")),
                    key=lambda m: ModelShape.from_config(model(m)).params)
    lines = ["# Golden plans", "",
             "Made by `tests/core/test_golden_plans.py` for a chat dataset of 1,000 rows of 64–512 tokens, "
             "no wishes. Peak is the estimated peak on the training device (GPU, or RAM without one); "
             "steps are the planned length (core.plan_length), time is one epoch. Review by eye: does each row "
             "look like what an expert would pick?", ""]
    for m in models:
        lines += [f"## {m}", "", "| hardware | strategy | checkpointing | micro-batch × accum | seq | optimizer "
                  "| peak / available | fits | steps | epoch |", "|---|---|---|---|---|---|---|---|---|---|"]
        for p in profiles:
            plan = planner.make_plan(profile(p), model(m), CHAT_LENGTHS)
            lines.append(
                f"| {p} | {plan.strategy}{'' if plan.strategy_built else ' (not built)'}"
                f"{' (' + plan.offload + ')' if plan.offload else ''} | {'yes' if plan.gradient_checkpointing else 'no'} "
                f"| {plan.micro_batch} × {plan.grad_accum} | {plan.seq_len} | {plan.optimizer} "
                f"| {plan.peak_bytes / GIB:.1f} / {plan.memory_limit / GIB:.1f} GiB | {'yes' if plan.fits else 'NO'} "
                f"| {plan.total_steps} ({plan.epochs:g} epochs) | {plan_text.duration(plan.epoch_time_s)} |")
        lines.append("")
    return "\n".join(lines)


def test_golden_table_is_current():
    assert GOLDEN.read_text() == render(), "plans changed: review and regenerate with " \
                                           "`.venv/bin/python -m tests.core.test_golden_plans`"


def peak_gb(name: str, setup: mm.Setup) -> float:
    return mm.estimate(ModelShape.from_config(model(name)), setup).device_total / GB


def test_8b_qlora_fits_in_about_6_gb():
    # Public figure: about 6 GB (Unsloth's table). Ours also counts HF's fp32 logits and the CUDA context.
    gb = peak_gb("llama-3.1-8b", mm.Setup("qlora", 1, 256, checkpointing=True, optimizer="paged_adamw8bit"))
    assert 5.5 <= gb <= 7.5, gb
    plan = planner.make_plan(profile("gpu-8gb-laptop"), model("llama-3.1-8b"), SHORT_LENGTHS)
    assert (plan.strategy, plan.fits) == ("qlora", True)


def test_70b_qlora_needs_about_41_gb():
    gb = peak_gb("llama-3.1-70b", mm.Setup("qlora", 1, 512, checkpointing=True, optimizer="paged_adamw8bit"))
    assert 38 <= gb <= 47, gb
    assert planner.make_plan(profile("gpu-48gb"), model("llama-3.1-70b"), CHAT_LENGTHS).strategy == "qlora"
    assert planner.make_plan(profile("gpu-24gb"), model("llama-3.1-70b"), CHAT_LENGTHS).strategy == "offload"


def test_7b_full_bf16_adamw_does_not_fit_24_gb():
    assert peak_gb("mistral-7b", mm.Setup("full", 1, 512, checkpointing=True)) > 24
    plan = planner.make_plan(profile("gpu-24gb"), model("mistral-7b"), CHAT_LENGTHS, planner.Wishes(strategy="full"))
    assert not plan.fits and any("does not fit" in w for w in plan.warnings)
    assert "full" in {r["strategy"] for r in planner.make_plan(profile("gpu-24gb"), model("mistral-7b"),
                                                                CHAT_LENGTHS).rejected}


if __name__ == "__main__":
    GOLDEN.write_text(render())
    print(f"wrote {GOLDEN}", file=sys.stderr)
