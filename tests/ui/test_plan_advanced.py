"""The plan page's Advanced panel and what-if GPU selector, with real planning on the tiny model."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QWizard

from core import settings, strategies
from core.errors import BadArgument
from core.hardware import GPU, HardwareProfile
from core.plan_text import size_text
from tuneforge_kernels import OPS
from ui.pages.plan_wishes import WishesPanel

GIB = 1024**3


def plan_page(wizard, advance, qtbot):
    advance(wizard)
    page = advance(wizard)
    assert page is wizard.plan_page
    qtbot.waitUntil(page.isComplete, timeout=20000)
    return page


def replanned(page, qtbot, check, timeout: int = 20000):
    """Wait for a fresh bundle that passes check (the debounce drops the old one at once)."""
    assert page.session.bundle is None
    qtbot.waitUntil(lambda: page.session.bundle is not None and not page.busy("plan"), timeout=timeout)
    assert check(page.session.bundle), page.session.bundle.plan.reasons


def test_forced_settings_replan_and_reach_the_bundle(make_wizard, advance, qtbot, tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    page = plan_page(wizard, advance, qtbot)
    plan = page.session.bundle.plan  # the demo's 202 rows: three passes, stopping when validation stops falling
    assert page.labels["steps"].text() == f"{plan.total_steps} (3 epochs), ending early after 3 checks without a new low"
    assert "Length: 3 epochs" in page.reasons.text() and page.labels["time"].text().startswith("at most ")
    assert page.advanced.body.isHidden()
    page.advanced.toggle.click()
    assert not page.advanced.body.isHidden()
    page.advanced.seq_len.setValue(96)
    page.advanced.micro_batch.setValue(3)
    page.advanced.lr.setCurrentText("5e-5")
    assert page.advanced.overridden.text() == "3 settings overridden"
    replanned(page, qtbot, lambda b: (b.plan.seq_len, b.plan.micro_batch, b.plan.lr) == (96, 3, 5e-5))
    assert "Sequence length 96 as you asked" in page.reasons.text()
    assert "Micro-batch 3 as you asked" in page.reasons.text()
    assert page.labels["seq_len"].text().startswith("96 tokens") and page.isComplete()
    disk = sum(page.session.bundle.plan.disk.values())  # the run's folder: checkpoints, result, best weights
    assert f"Disk for checkpoints and results: about {size_text(disk)}." in page.host_memory.text()
    page.advanced.lr.setCurrentText("fast")  # not a number: a sentence, and no plan to go on with
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=5000)
    assert "Learning rate 'fast' is not usable" in page.error.message and not page.isComplete()
    page.advanced.lr.setCurrentText("5e-5")
    assert page.advanced.seq_len.maximum() == 256  # the tiny model's context, from the plan
    page.advanced.seq_len.setValue(512)
    assert page.advanced.seq_len.value() == 256 and "256 tokens" in page.advanced.seq_len.toolTip()
    page.advanced.show_context(None)  # as before any plan: the box takes more, and the planner says no
    page.advanced.seq_len.setValue(512)
    qtbot.waitUntil(lambda: "longer than this model's context (256 tokens)" in page.error.message, timeout=20000)
    assert not page.isComplete()
    page.advanced.reset()
    replanned(page, qtbot, lambda b: b.plan.micro_batch != 3 and b.plan.seq_len != 96)
    assert page.advanced.overridden.text() == "" and not page.error.message
    assert page.advanced.seq_len.maximum() == 256


def test_what_if_plans_for_another_gpu_and_holds_next(make_wizard, advance, qtbot, tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    page = plan_page(wizard, advance, qtbot)
    assert page.what_if.itemText(0) == "This machine" and page.what_if.count() >= 3
    index = page.what_if.findText("What if: NVIDIA GeForce RTX 4090 (24 GB)")
    page.what_if.setCurrentIndex(index)
    replanned(page, qtbot, lambda b: b.plan.device == "cuda" and b.plan.gpu_name == "NVIDIA GeForce RTX 4090 (24 GB)")
    assert "RTX 4090" in page.labels["device"].text() and "hypothetical" in page.labels["device"].text()
    assert "hypothetical" in page.settings.title() and "cannot train" in page.what_if_note.message
    assert not page.isComplete() and not wizard.button(QWizard.NextButton).isEnabled()
    fused = page.session.bundle.plan.memory["logits and loss"]
    page.advanced.kernels.setCurrentIndex(page.advanced.kernels.findText("Off"))  # our kernels off: logits counted
    assert page.advanced.overridden.text() == "1 setting overridden"
    replanned(page, qtbot, lambda b: b.plan.kernels == [] and b.plan.memory["logits and loss"] > fused)
    assert "Our kernels are off, as you asked." in page.reasons.text()
    page.advanced.kernels.setCurrentIndex(page.advanced.kernels.findText("All but rmsnorm"))  # the fused loss stays
    rest = [op for op in OPS if op != "rmsnorm"]
    replanned(page, qtbot, lambda b: b.plan.kernels == rest and b.plan.memory["logits and loss"] == fused)
    assert f"Our kernels: only {', '.join(rest)}, as you asked." in page.reasons.text()
    assert page.advanced.overridden.text() == "1 setting overridden"
    page.advanced.reset()
    replanned(page, qtbot, lambda b: b.plan.kernels == "auto")
    page.what_if.setCurrentIndex(0)
    replanned(page, qtbot, lambda b: b.hardware.source == "this machine")
    assert "hypothetical" not in page.labels["device"].text() and not page.what_if_note.message
    assert page.isComplete() and wizard.button(QWizard.NextButton).isEnabled()


def test_a_model_without_its_weights_is_planned_for_and_next_waits(make_wizard, advance, qtbot, tiny_model_dir,
                                                                   tmp_path):
    """A model folder with its config and tokenizer alone: the model page says plan only, the Plan step plans it
    (the same plan as the whole folder's) and says why Next waits."""
    light = tmp_path / "light"
    light.mkdir()
    for f in tiny_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            (light / f.name).write_bytes(f.read_bytes())
    wizard = make_wizard(model=str(light))
    model_page = wizard.currentPage()
    qtbot.waitUntil(model_page.isComplete, timeout=20000)
    assert model_page.error.message.startswith("Plan only: the model folder lacks weights (*.safetensors)")
    advance(wizard)
    page = advance(wizard)
    assert page is wizard.plan_page
    qtbot.waitUntil(lambda: page.session.bundle is not None and not page.busy("plan"), timeout=20000)
    assert page.session.bundle.plan.strategy and page.labels["strategy"].text()
    assert "Plan only: the model folder lacks weights" in page.what_if_note.message
    assert "Next waits for the whole model" in page.what_if_note.message
    assert not page.isComplete() and not wizard.button(QWizard.NextButton).isEnabled()


def test_a_wish_that_cannot_fit_says_so(make_wizard, advance, qtbot, tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    page = plan_page(wizard, advance, qtbot)
    page.what_if.setCurrentIndex(page.what_if.findText("What if: NVIDIA GeForce RTX 4060 Laptop GPU (8 GB)"))
    page.advanced.strategy.setCurrentIndex(page.advanced.strategy.findData("full"))
    page.advanced.micro_batch.setValue(256)
    page.advanced.seq_len.setValue(256)  # the tiny model's whole context
    page.advanced.kernels.setCurrentIndex(page.advanced.kernels.findText("Off"))  # 64k tokens' logits: 36 GiB
    replanned(page, qtbot, lambda b: not b.plan.fits and b.plan.micro_batch == 256)
    assert "does not fit what the device offers" in page.warnings.message
    assert page.warnings.styleSheet().count("#fdecea")  # shown as an error, not a hint


def control(panel, name: str):
    return next(c for c in panel.options.controls if c.name == name)


def test_strategy_settings_cap_and_device_reach_the_plan_and_reset_clears_them(make_wizard, advance, qtbot,
                                                                                 tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    page = plan_page(wizard, advance, qtbot)
    adv = page.advanced
    fresh = adv.state()
    page.what_if.setCurrentIndex(page.what_if.findText("What if: NVIDIA GeForce RTX 4090 (24 GB)"))
    replanned(page, qtbot, lambda b: b.plan.device == "cuda")
    adv.strategy.setCurrentIndex(adv.strategy.findData("lora"))
    assert [c.name for c in adv.options.controls] == [o["name"] for o in strategies.describe_options("lora")
                                                      if o["name"] != "experts"]  # (the tiny model has none)
    r = control(adv, "r")
    assert r.widget.text() == "Default (16)" and "Rank" in r.widget.toolTip() and r.value() is None
    r.widget.setValue(32)
    adv.memory_cap.setValue(3)
    adv.device.setCurrentIndex(adv.device.findData("cpu"))  # the what-if has a GPU; train on the CPU instead
    adv.stop_early.setCurrentIndex(adv.stop_early.findData(3))
    adv.time_limit.setCurrentIndex(adv.time_limit.findText("15 min"))
    adv.train_on.setCurrentIndex(adv.train_on.findData("last"))
    assert adv.overridden.text() == "7 settings overridden"
    wishes = adv.wishes()
    assert (wishes.options, wishes.memory_cap_bytes, wishes.device, wishes.stop_early, wishes.time_limit_s,
            wishes.train_on) == ({"r": 32}, 3 * GIB, "cpu", 3, 900, "last")
    replanned(page, qtbot, lambda b: (b.plan.device, b.plan.options["r"], b.plan.stop_early) == ("cpu", 32, 3)
              and b.plan.memory_limit <= 3 * GIB and b.plan.time_limit_s == 900 and b.plan.train_on == "last")
    assert "Memory capped at 3.00 GiB as you asked" in page.reasons.text()
    assert "within the 15 min you allowed" in page.reasons.text()
    assert "Learns from each conversation&#x27;s last answer alone, as you asked" in page.reasons.text()
    r.widget.setValue(0)  # a value the strategy refuses: its sentence, and no plan
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=5000)
    assert "Setting 'r': must be at least 1." in page.error.message and not page.session.bundle
    adv.reset()
    replanned(page, qtbot, lambda b: (b.plan.device, b.plan.options["r"]) == ("cuda", 16))
    assert adv.state() == fresh and adv.overridden.text() == "" and not page.error.message


@dataclasses.dataclass(frozen=True)
class ToyOptions:
    r: int = settings.option(8, help="Rank.")
    scale: float = settings.option(0.5, help="How much.")
    fast: bool = settings.option(False, help="Hurry.")
    mode: str = settings.option("a", help="'a' (the first) or 'b' (the second).")
    names: str = settings.option("auto", help="'auto', or names separated by commas, e.g. 'x,y'.")
    shape: list = settings.option([1, 2], help="For config files only.")


class Toy(strategies.Strategy):
    name, summary, Options = "toy", "A strategy the panel has never heard of.", ToyOptions


def test_any_strategys_settings_show_as_typed_controls_and_follow_the_plan(qtbot, monkeypatch):
    monkeypatch.setitem(strategies.REGISTRY, "toy", Toy())
    panel = WishesPanel()
    qtbot.addWidget(panel)
    assert not panel.options.controls and "once there is a plan" in panel.options_title.text()
    panel.show_strategy("toy")  # what the page tells it after a plan while the strategy is Auto
    kinds = {c.name: (type(c.widget).__name__, c.widget.toolTip()) for c in panel.options.controls}
    assert kinds == {"r": ("DefaultSpin", "Rank."), "scale": ("DefaultDoubleSpin", "How much."),
                     "fast": ("QComboBox", "Hurry."), "mode": ("QComboBox", ToyOptions.__dataclass_fields__[
                         "mode"].metadata["help"]), "names": ("QLineEdit", ToyOptions.__dataclass_fields__[
                             "names"].metadata["help"])}
    assert [control(panel, "mode").widget.itemText(i) for i in range(3)] == ["Default (a)", "a", "b"]
    assert "planned strategy" in panel.options_title.text() and panel.wishes().options == {}
    control(panel, "r").widget.stepBy(1)  # from Default, a step starts at the default itself
    control(panel, "mode").widget.setCurrentIndex(2)
    control(panel, "scale").widget.setValue(0.25)
    assert panel.wishes().options == {"r": 8, "mode": "b", "scale": 0.25} and panel.count_overrides() == 3

    gpus = [GPU(0, "Small", 12 * GIB, 11 * GIB), GPU(1, "Big", 80 * GIB, 79 * GIB)]
    with qtbot.waitSignal(panel.changed):  # lora has r but not mode or scale: those go, and it plans again
        panel.show_plan(SimpleNamespace(hardware=HardwareProfile(gpus=gpus), context=512,
                                        plan=SimpleNamespace(strategy="lora", experts=0)))
    assert panel.wishes().options == {"r": 8} and panel.seq_len.maximum() == 512
    assert "experts" not in [c.name for c in panel.options.controls]  # a dense model: no setting for experts
    panel.show_plan(SimpleNamespace(hardware=HardwareProfile(gpus=gpus), context=512,
                                    plan=SimpleNamespace(strategy="lora", experts=8)))
    assert "experts" in [c.name for c in panel.options.controls] and panel.wishes().options == {"r": 8}
    assert [panel.device.itemText(i) for i in range(panel.device.count())] == [
        "Auto", "CPU", "GPU 0: Small (12 GiB)", "GPU 1: Big (80 GiB)"]
    panel.device.setCurrentIndex(3)
    assert (panel.wishes().device, panel.wishes().gpu_index) == ("cuda", 1)
    panel.show_hardware(HardwareProfile(gpus=gpus[:1], source="what-if: x"))  # not this machine's GPUs
    assert panel.device.count() == 4 and panel.device.currentData() == "cuda:1"
    panel.reset()
    wishes = panel.wishes()
    assert (wishes.options, wishes.device, wishes.gpu_index, wishes.memory_cap_bytes) == ({}, None, None, None)
    assert panel.count_overrides() == 0 and control(panel, "r").widget.text() == "Default (16)"


def test_the_objective_is_a_wish_auto_until_chosen(qtbot):
    panel = WishesPanel()
    qtbot.addWidget(panel)
    assert panel.wishes().objective is None  # Auto: the planner picks ORPO for preference pairs (core.planner)
    assert [panel.objective.itemText(i) for i in range(panel.objective.count())] == [
        "Auto", "Supervised (SFT)", "Preference (ORPO)", "Preference (DPO)", "Preference (RPO)",
        "Preference (SimPO)", "Rated answers (KTO)"]
    panel.objective.setCurrentIndex(panel.objective.findData("dpo"))
    panel.beta.setCurrentText("0.05")  # its strength: picked or typed, checked against the objective by the plan
    assert (panel.wishes().objective, panel.wishes().beta, panel.count_overrides()) == ("dpo", 0.05, 2)
    panel.beta.setCurrentText("strong")
    with pytest.raises(BadArgument, match=r"^Strength \(beta\) 'strong' is not usable; write a number like 0.1, or "
                                          "pick Auto.$"):
        panel.wishes()
    panel.beta.setCurrentIndex(0)
    panel.objective.setCurrentIndex(panel.objective.findData("sft"))
    assert panel.wishes().objective == "sft" and panel.overridden.text() == "1 setting overridden"
    panel.reset()
    assert panel.wishes().objective is None and panel.overridden.text() == ""
