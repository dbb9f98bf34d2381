"""The plan page's Advanced panel and what-if GPU selector, with real planning on the tiny model."""

from __future__ import annotations

from PySide6.QtWidgets import QWizard


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
    page.advanced.lr.setCurrentText("fast")  # not a number: a sentence, and no plan to go on with
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=5000)
    assert "Learning rate 'fast' is not usable" in page.error.message and not page.isComplete()
    page.advanced.reset()
    replanned(page, qtbot, lambda b: b.plan.micro_batch != 3 and b.plan.seq_len != 96)
    assert page.advanced.overridden.text() == "" and not page.error.message


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
    page.what_if.setCurrentIndex(0)
    replanned(page, qtbot, lambda b: b.hardware.source == "this machine")
    assert "hypothetical" not in page.labels["device"].text() and not page.what_if_note.message
    assert page.isComplete() and wizard.button(QWizard.NextButton).isEnabled()


def test_a_wish_that_cannot_fit_says_so(make_wizard, advance, qtbot, tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    page = plan_page(wizard, advance, qtbot)
    page.what_if.setCurrentIndex(page.what_if.findText("What if: NVIDIA GeForce RTX 4060 Laptop GPU (8 GB)"))
    page.advanced.strategy.setCurrentIndex(page.advanced.strategy.findData("full"))
    page.advanced.micro_batch.setValue(256)
    page.advanced.seq_len.setValue(4096)
    replanned(page, qtbot, lambda b: not b.plan.fits and b.plan.micro_batch == 256)
    assert "does not fit what the device offers" in page.warnings.message
    assert page.warnings.styleSheet().count("#fdecea")  # shown as an error, not a hint
