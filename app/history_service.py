"""What the History view shows, as plain values: runs with their figures, one run in detail, two runs compared.

Each function opens the history, reads, and closes it; the UI calls them off its thread (they take a
`progress`, as every background function does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from app import operations as ops
from core import objectives, results
from core.data import hub_datasets
from core.export import folder_size
from core.plan_text import size_text
from core.progress import Progress

# Keys of a run's config that differ between any two runs or are derived from the others: not a difference
# worth showing. The plan and the hardware profile are what the settings were made from, shown elsewhere.
NOT_COMPARED = {"run_id", "run_dir", "db_path", "plan", "hardware"}
RESUMABLE = {"stopped", "interrupted", "failed"}

Curve = list[tuple[int, float]]


@dataclass
class RunSummary:
    """One row of the history: what the run was and how it went."""

    id: str
    project: str
    status: str
    model: str
    strategy: str
    dataset: str
    final_loss: float | None
    best_loss: float | None
    eval_loss: float | None
    duration_s: float | None
    steps_done: int
    total_steps: int
    created_at: float
    outcome: str
    disk_bytes: int | None = None  # what its folder holds (checkpoints, result, logs); None: no folder, or not read
    name: str = ""  # the person's name for it ('' when unnamed)

    @property
    def title(self) -> str:
        """'pirate, longer (20261205-…)' for a named run, its id otherwise."""
        return f"{self.name} ({self.id})" if self.name else self.id

    @classmethod
    def of(cls, run: dict) -> "RunSummary":
        started, ended = run.get("started_at"), run.get("ended_at")
        if run.get("trained_s"):  # every session of the run, pauses left out
            took = run["trained_s"]
        elif started and ended:
            took = max(0.0, ended - started)
        elif started and run["status"] == "running":
            took = max(0.0, time.time() - started)
        else:
            took = None
        data = run.get("data_path") or ""
        return cls(id=run["id"], project=run.get("project") or "", status=run["status"],
                   model=run.get("model") or Path(run.get("model_path") or "").name,
                   strategy=strategy_text(run),
                   dataset=dataset_name(data), final_loss=run.get("final_loss"),
                   best_loss=run.get("best_loss"), eval_loss=run.get("eval_loss"), duration_s=took,
                   steps_done=run.get("steps_done") or 0, total_steps=run.get("total_steps") or 0,
                   created_at=run.get("created_at") or 0.0, outcome=run.get("outcome") or "",
                   name=run.get("name") or "")


def strategy_text(run: dict) -> str:
    """How a run trained, as History and `runs` show it: its strategy, with its objective for preference tuning,
    e.g. "lora (DPO)"."""
    objective = objective_of(run)
    shown = objectives.label(objective) if objective in objectives.NAMES else objective
    return (run.get("strategy") or "") + (f" ({shown})" if shown else "")


def objective_of(run: dict) -> str:
    """What the run learned: 'sft', or a preference objective's name (its config says; runs before it were SFT)."""
    config = run.get("config")
    return (config.get("objective") if isinstance(config, dict) else None) or "sft"


def dataset_name(data_path: str) -> str:
    """What a run trained on, short: the file or folder's name, or a cached hub dataset's whole id (runs record
    files by absolute path and hub datasets by id, core.data.source.canonical)."""
    return data_path if hub_datasets.looks_like_id(data_path) else Path(data_path).name


@dataclass
class RunDetail:
    summary: RunSummary
    config: dict
    train: Curve
    eval: Curve
    checkpoints: list[dict] = field(default_factory=list)
    exports: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    run_dir: str = ""
    resumable: bool = False  # stopped or interrupted, with a checkpoint and its config file to start from
    has_result: bool = False  # a trained result to try and export
    best_weights: dict | None = None  # what best/ holds (core.results.best_of): the lowest validation loss's weights
    preferred: Curve = field(default_factory=list)  # preference runs: (step, share of its pairs preferred)...
    eval_preferred: Curve = field(default_factory=list)  # ...and of the validation pairs at each check

    @property
    def id(self) -> str:
        return self.summary.id


@dataclass
class Comparison:
    runs: tuple[RunSummary, RunSummary]
    differences: list[tuple[str, object, object]]  # (key, value in the first run, value in the second)
    curves: dict[str, dict[str, Curve]]  # run id → "train"/"eval" → (step, loss)
    # (held-out file, the first run's tuned loss on it, the second's): the latest `evaluate` of each, per file
    held_out: list[tuple[str, float | None, float | None]] = field(default_factory=list)


def projects(progress: Progress | None = None) -> list[str]:
    """The projects that hold runs."""
    with ops.open_history() as db:
        return [p["name"] for p in db.projects(with_runs=True)]


def run_summaries(project: str | None = None, progress: Progress | None = None) -> list[RunSummary]:
    """Every run (of one project, or all), newest first, with what its folder holds on disk."""
    return [replace(RunSummary.of(r), disk_bytes=disk_bytes(r.get("run_dir"))) for r in ops.list_runs(project)]


def disk_text(n: int | None) -> str:
    """disk_bytes in words: '2 MB', '0 KB' for an empty folder, '—' for none."""
    return "—" if n is None else size_text(n) or "0 KB"


def disk_bytes(run_dir: str | None) -> int | None:
    """What a run's folder holds on disk; None when it has none."""
    return folder_size(Path(run_dir)) if run_dir and Path(run_dir).is_dir() else None


def run_detail(run_id: str, progress: Progress | None = None) -> RunDetail:
    with ops.open_history() as db:
        run = ops.with_liveness(db.run(run_id))
        run["project"] = {p["id"]: p["name"] for p in db.projects()}.get(run.get("project_id"), "")
        train_rows, eval_rows = db.metrics(run["id"], "train"), db.metrics(run["id"], "eval")
        checkpoints, exports, events = db.checkpoints(run["id"]), db.exports(run["id"]), db.events(run["id"])
    run_dir = Path(run.get("run_dir") or "")
    summary = RunSummary.of(run)
    resumable = (summary.status in RESUMABLE and bool(checkpoints) and (run_dir / "run.json").is_file())
    return RunDetail(summary, run.get("config") or {}, _curve(train_rows), _curve(eval_rows), checkpoints, exports,
                     events, str(run_dir), resumable=resumable,
                     has_result=bool(run.get("run_dir")) and (run_dir / "result").is_dir(),
                     best_weights=results.best_of(run_dir) if run.get("run_dir") else None,
                     preferred=_curve(train_rows, "prefers"), eval_preferred=_curve(eval_rows, "prefers"))


def compare(first: str, second: str, progress: Progress | None = None) -> Comparison:
    """Two runs side by side: the config keys whose values differ, and both loss curves."""
    a, b = run_detail(first), run_detail(second)
    return Comparison((a.summary, b.summary), config_differences(a.config, b.config),
                      {a.id: {"train": a.train, "eval": a.eval}, b.id: {"train": b.train, "eval": b.eval}},
                      held_out_losses(a.id, b.id))


def held_out_losses(first: str, second: str) -> list[tuple[str, float | None, float | None]]:
    """(file, first's tuned loss, second's) for every file either run was measured on, the latest measurement of
    each; the same rows scored by two runs are what makes their losses comparable."""
    with ops.open_history() as db:
        latest = [{e["data"]: e["tuned_loss"] for e in db.evaluations(run)} for run in (first, second)]
    files = list(dict.fromkeys([*latest[0], *latest[1]]))
    return [(f, latest[0].get(f), latest[1].get(f)) for f in files]


def config_differences(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(key, a's value, b's value) for every differing key, nested settings as dotted keys; a key one run
    lacks has None on that side."""
    flat_a, flat_b = flat_config(a), flat_config(b)
    keys = sorted(set(flat_a) | set(flat_b))
    return [(k, flat_a.get(k), flat_b.get(k)) for k in keys if flat_a.get(k) != flat_b.get(k)]


def flat_config(config: dict, prefix: str = "") -> dict:
    """The config as one level of dotted keys (strategy_options.r), without NOT_COMPARED."""
    flat = {}
    for key, value in config.items():
        if not prefix and key in NOT_COMPARED:
            continue
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _curve(rows: list[dict], column: str = "loss") -> Curve:
    return [(int(r["step"]), float(r[column])) for r in rows if r.get(column) is not None]
