"""PNG pictures of every page of the main window and of each wizard page, for reviews and the docs.

    python -m ui.screenshots [FOLDER] [--theme light|dark|both]    (`make screenshots`; FOLDER: ./screenshots)

`both` takes every page in light, then switches the open window to dark and takes the pages with charts
again as dark-*.png: the charts were built under light, so those pictures show that they follow a switch.

It works in a temporary data folder holding two sample runs (written straight into the history), with
the bundled model (linked from your data folder when it was converted there already, else converted
once, which takes a minute). The train page is a real run of it on the demo data: a few steps, then
paused and asked a question, then stopped (about a minute on a laptop's CPU). Without a display it
draws offscreen; `make screenshots` runs it in a real X server (Xvfb) where there is one.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _curve(steps: int, floor: float, drop: float, pace: float) -> list[float]:
    """A plausible loss curve: a fast fall, then a slow one, with a little step-to-step noise."""
    return [round(floor + drop * math.exp(-s / pace) + 0.04 * math.sin(1.7 * s) * math.exp(-s / 40), 4)
            for s in range(1, steps + 1)]


SAMPLE = {  # run id → (settings that differ, training losses, validation losses, status, minutes it took)
    "20260301-091512-a3f9": ({"lr": 2e-4, "strategy_options": {"r": 16}}, _curve(60, 1.55, 1.5, 14),
                             [(20, 1.92), (40, 1.71), (60, 1.76)], "done", 14),  # its lowest at 40: best/ kept
    "20260302-142207-7c1e": ({"lr": 1e-4, "seq_len": 256, "strategy_options": {"r": 8}}, _curve(45, 1.7, 1.4, 22),
                             [(20, 2.18), (40, 1.95)], "stopped", 9),
}


def seed_history(home: Path) -> list[str]:
    """Two sample runs: one done with a result to try and export, one stopped with a checkpoint to resume."""
    from core import atomic, history, results, settings
    from core.evaluation import Report
    from core.run_config import RunConfig

    data = str(DEMO / "pirate_chat.jsonl")
    with history.History(home / "history.sqlite") as db:
        db.record_dataset("sample", data, "messages", 202, {})
        for run_id, (differ, losses, evals, status, minutes) in SAMPLE.items():
            run_dir = home / "runs" / run_id
            cfg = RunConfig(run_id=run_id, run_dir=str(run_dir), db_path=str(home / "history.sqlite"),
                            model_path=str(home / "models" / "smollm2-135m-instruct"), data_path=data,
                            project="pirates", model_name="default", max_steps=60, **differ)
            atomic.write_json(run_dir / "run.json", settings.to_dict(cfg))
            db.create_run(run_id, "pirates", model="default", model_path=cfg.model_path, dataset_id="sample",
                          data_path=data, strategy="lora", config=settings.to_dict(cfg), run_dir=str(run_dir),
                          total_steps=60, name="pirate, first try" if status == "done" else None)
            for step, loss in enumerate(losses, 1):
                db.add_metric(run_id, step, "train", loss)
            for step, loss in evals:
                db.add_metric(run_id, step, "eval", loss)
            db.add_checkpoint(run_id, len(losses), str(run_dir / f"checkpoint-{len(losses)}"))
            outcome = "finished" if status == "done" else "stopped by you; a checkpoint was saved"
            db.add_event(run_id, status, outcome)
            started = time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))  # as its id says
            db.update_run(run_id, created_at=started, status=status, steps_done=len(losses), final_loss=losses[-1],
                          best_loss=min(losses), eval_loss=evals[-1][1], started_at=started,
                          ended_at=started + 60 * minutes, outcome=outcome)
            held_out = str(DEMO / "pirate_heldout.jsonl")  # a sample measurement, for the compare view's row
            db.add_evaluation(run_id, Report(held_out, 12, 312, 3.8547, round(evals[-1][1] + 0.08, 4), [], [],
                                             []).to_dict())
        done = home / "runs" / next(iter(SAMPLE))
        (done / "result").mkdir(parents=True, exist_ok=True)
        atomic.write_json(done / "best" / results.MARK, {"step": 40, "loss": 1.71, "last_step": 60, "last_loss": 1.76})
    return list(SAMPLE)


def wait(app, done, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise TimeoutError("the page did not get ready in time")
        app.processEvents()
        time.sleep(0.02)
    for _ in range(5):  # let layouts settle
        app.processEvents()


def scroll_to(widget) -> None:
    """Scroll the nearest scroll area holding `widget` so that its top shows."""
    from PySide6.QtWidgets import QScrollArea

    area = widget.parentWidget()
    while area is not None and not isinstance(area, QScrollArea):
        area = area.parentWidget()
    if area is not None:
        area.ensureWidgetVisible(widget, 0, 0)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("folder", nargs="?", default="screenshots")
    args.add_argument("--theme", choices=("light", "dark", "both"), default="light")
    opts = args.parse_args(argv)
    no_display = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if no_display and sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from app import paths

    yours = os.environ.get("TUNEFORGE_HOME")
    mine = (Path(yours) if yours else paths.chosen_home() or paths.default_home()) / "models" / "smollm2-135m-instruct"
    home = Path(tempfile.mkdtemp(prefix="tuneforge-shots-")) / "home"
    (home / "models").mkdir(parents=True)
    if mine.is_dir():
        (home / "models" / mine.name).symlink_to(mine, target_is_directory=True)
    os.environ["TUNEFORGE_HOME"] = str(home)
    run_ids = seed_history(home)

    from PySide6.QtWidgets import QApplication, QWizard

    from core import runtime_env
    from ui import tasks, theme
    from ui.main_window import HISTORY, NEW, SETTINGS, MainWindow

    runtime_env.prepare()
    app = QApplication.instance() or QApplication(["tuneforge-screenshots"])
    theme.apply("light" if opts.theme == "both" else opts.theme)
    out = Path(opts.folder)
    out.mkdir(parents=True, exist_ok=True)
    window = MainWindow()
    window.show()
    saved = []

    def shot(name: str) -> None:
        wait(app, lambda: True)
        path = out / f"{name}.png"
        window.grab().save(str(path))
        saved.append(path)

    wizard = window.wizard
    window.show_page(NEW)
    names = ["new-1-model", "new-2-data", "new-3-plan", "new-4-train", "new-5-export"]
    for i, name in enumerate(names):
        page = wizard.currentPage()
        if page is wizard.train_page:  # a real run of the bundled model: a few steps, paused, asked a question
            page.start_button.click()
            wait(app, lambda: len(page.loss_chart.points) >= 3, timeout=600)
            page.pause_button.click()
            wait(app, page.try_box.isVisible, timeout=300)
            page.try_box.prompt_edit.setText("What is the capital of France?")
            page.try_box.ask()
            wait(app, lambda: bool(page.try_box.pane.text.toPlainText()), timeout=300)
            shot(name)
            page.stop_button.click()  # a checkpoint and the result, which the export page then offers
            wait(app, page.isComplete, timeout=300)
        elif page is wizard.export_page:  # a conversation of two questions with the base and the tuned model
            for prompt in ("What is the capital of France?", "And of Peru?"):
                page.prompt_edit.setText(prompt)
                page.ask()
                wait(app, lambda: page.ask_button.isEnabled(), timeout=300)
            box = page.evaluate_box  # and both measured on the demo's held-out questions
            box.file_edit.setText(str(DEMO / "pirate_heldout.jsonl"))
            box.measure()
            wait(app, lambda: box.measure_button.isEnabled(), timeout=600)
            shot(name)
        elif page is wizard.model_page:  # resolved, and the list of models filled
            wait(app, lambda: page.isComplete() and not page.busy("catalog"))
            shot(name)
        else:
            wait(app, page.isComplete)
            shot(name)
        if page is wizard.plan_page:  # the Advanced panel open, scrolled into view
            page.advanced.toggle.click()
            wait(app, lambda: True)
            scroll_to(page.advanced.body)
            shot("new-3-plan-advanced")
            page.advanced.toggle.click()
        if i < len(names) - 1:
            wizard.button(QWizard.NextButton).click()

    window.show_page(HISTORY)
    history = window.history
    wait(app, lambda: history.table.topLevelItemCount() == len(run_ids) + 1)  # and the run trained above
    shot("history-1-list")
    history.select(run_ids[:1])
    wait(app, lambda: history.detail_view is not None)
    for tab, name in enumerate(("training", "try-and-export", "settings")):
        history.detail_view.tabs.setCurrentIndex(tab)
        shot(f"history-2-run-{name}")
    history.select(run_ids)
    wait(app, lambda: history.stack.currentWidget() is history.compare_view)
    shot("history-3-compare")
    window.show_page(SETTINGS)
    shot("settings")
    if opts.theme == "both":
        theme.apply("dark")
        window.show_page(HISTORY)
        history.select(run_ids[:1])
        wait(app, lambda: history.detail_view is not None)
        history.detail_view.tabs.setCurrentIndex(0)
        shot("dark-history-2-run-training")
        history.select(run_ids)
        wait(app, lambda: history.stack.currentWidget() is history.compare_view)
        shot("dark-history-3-compare")
        window.show_page(NEW)
        for name in ("dark-new-4-train", "dark-new-3-plan", "dark-new-2-data"):
            wizard.back()
            shot(name)
    window.close()
    tasks.wait_idle(30000)
    for path in saved:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
