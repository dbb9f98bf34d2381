"""Two finished runs in a real history, made directly (no training): different settings, different curves."""

from __future__ import annotations

from pathlib import Path

from core import history, settings
from core.run_config import RunConfig

FIRST, SECOND = "20260101-090000-aaaa", "20260102-100000-bbbb"
# run id → (project, settings that differ, training losses, validation losses, seconds it took)
RUNS = {
    FIRST: ("pirates", {"lr": 2e-4, "seq_len": 512, "strategy_options": {"r": 16}},
            [2.9, 2.4, 2.1, 1.9, 1.8, 1.7], [(3, 2.3), (6, 1.95)], 120.0),
    SECOND: ("pirates", {"lr": 1e-4, "seq_len": 256, "strategy_options": {"r": 8}},
             [3.0, 2.7, 2.5, 2.35, 2.2, 2.1], [(3, 2.6), (6, 2.25)], 80.0),
}


def make_two_runs(home: Path) -> tuple[str, str]:
    """Write both runs into home's history; the first has a result folder (it can be tried and exported)."""
    with history.History(home / "history.sqlite") as db:
        db.record_dataset("digest-1", "/data/pirate_chat.jsonl", "messages", 202, {"max": 80})
        for run_id, (project, differ, losses, evals, took) in RUNS.items():
            run_dir = home / "runs" / run_id
            cfg = RunConfig(run_id=run_id, run_dir=str(run_dir), db_path=str(home / "history.sqlite"),
                            model_path=str(home / "models" / "m"), data_path="/data/pirate_chat.jsonl",
                            project=project, model_name="default", max_steps=len(losses), **differ)
            db.create_run(run_id, project, model="default", model_path=cfg.model_path, dataset_id="digest-1",
                          data_path=cfg.data_path, strategy="lora", config=settings.to_dict(cfg),
                          run_dir=str(run_dir), total_steps=len(losses))
            for step, loss in enumerate(losses, 1):
                db.add_metric(run_id, step, "train", loss, lr=cfg.lr)
            for step, loss in evals:
                db.add_metric(run_id, step, "eval", loss)
            db.add_checkpoint(run_id, len(losses), str(run_dir / f"checkpoint-{len(losses)}"))
            db.add_event(run_id, "done", "finished")
            db.update_run(run_id, status=history.DONE, outcome="finished", steps_done=len(losses),
                          final_loss=losses[-1], best_loss=min(losses), eval_loss=evals[-1][1],
                          started_at=1_767_254_400.0, ended_at=1_767_254_400.0 + took)
    (home / "runs" / FIRST / "result").mkdir(parents=True)
    return FIRST, SECOND
