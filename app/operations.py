"""The verbs of the app as plain functions, shared by the CLI and the UI.

Each takes plain values (and a Progress where it is long) and returns plain values or raises a
KnownError. Nothing here knows about terminals or windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app import paths
from app.supervisor import TrainerJob
from core import atomic, hardware, history, model_source, planner, settings
from core.data import dataset as data_mod
from core.data import tokenize
from core.errors import KnownError
from core.progress import Progress
from core.run_config import RunConfig


def open_history() -> history.History:
    return history.History(paths.db_path())


def resolve_model(name: str, progress: Progress | None = None) -> model_source.ModelRef:
    return model_source.resolve(name, paths.models_dir(), progress)


def load_tokenizer(ref: model_source.ModelRef):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ref.path))


def machine_profile(hardware_file: str | None = None, reprobe_disk: bool = False) -> hardware.HardwareProfile:
    if hardware_file:
        return hardware.load(hardware_file)
    db = open_history()
    try:
        return hardware.profile_machine(paths.home(), db, reprobe=reprobe_disk)
    finally:
        db.close()


def inspect_data(path: str, model: str | None = None, seq_len: int | None = None,
                 progress: Progress | None = None) -> dict:
    """What the file holds: format, rows, problems and (given a model) token statistics and a preview."""
    progress = progress or Progress()
    progress.update(None, "Reading the dataset")
    ds = data_mod.load(path)
    report = {**ds.summary(), "problem_list": [str(p) for p in ds.problems[:50]]}
    if model:
        ref = resolve_model(model, progress)
        tok = load_tokenizer(ref)
        progress.update(None, "Counting tokens")
        lengths = tokenize.token_lengths(ds.examples, tok)
        report["tokens"] = tokenize.length_stats(lengths)
        report["token_lengths"] = lengths
        if seq_len:
            report["truncated_at_seq_len"] = sum(1 for n in lengths if n > seq_len)
        first = ds.examples[0]
        report["preview"] = (tokenize.render_chat(tok, first.messages) if first.messages else first.text)[:2000]
    return report


@dataclass
class PlanBundle:
    """Everything a run is made from: the plan and the inputs it was made for."""

    plan: planner.Plan
    model: model_source.ModelRef
    data_path: str
    data: dict  # dataset summary
    hardware: hardware.HardwareProfile
    token_lengths: list[int] = field(repr=False, default_factory=list)


def make_plan(model: str, data: str, wishes: planner.Wishes | None = None, hardware_file: str | None = None,
              progress: Progress | None = None) -> PlanBundle:
    progress = progress or Progress()
    ds = data_mod.load(data)  # the cheap check first: a wrong path should not wait for a model conversion
    ref = resolve_model(model, progress)
    progress.update(None, "Measuring token lengths")
    lengths = tokenize.token_lengths(ds.examples, load_tokenizer(ref))
    hw = machine_profile(hardware_file)
    plan = planner.make_plan(hw, ref.config(), lengths, wishes)
    return PlanBundle(plan, ref, str(Path(data).resolve()), ds.summary(), hw, lengths)


def create_run(bundle: PlanBundle, project: str = "default", seed: int = 42, **overrides) -> RunConfig:
    """Record the run in the history and write its config file; the trainer starts from that file."""
    from core import strategies

    strategies.get(bundle.plan.strategy)  # refuse not-built strategies before anything is written
    db = open_history()
    try:
        run_id = history.new_run_id()
        p = bundle.plan
        fields = dict(
            run_id=run_id, run_dir=str(paths.run_dir(run_id)), db_path=str(paths.db_path()),
            model_path=str(bundle.model.path), data_path=bundle.data_path, project=project,
            model_name=bundle.model.name, strategy=p.strategy, device=p.device, precision=p.precision,
            seq_len=p.seq_len, micro_batch=p.micro_batch, grad_accum=p.grad_accum, max_steps=p.max_steps,
            epochs=p.epochs, lr=p.lr, seed=seed, gradient_checkpointing=p.gradient_checkpointing,
            plan=p.to_dict(), hardware=bundle.hardware.to_dict(),
        )
        fields.update(overrides)  # every planned setting can be overridden (STYLE §6)
        cfg = settings.from_dict(RunConfig, fields, source="run settings")
        dataset_id = db.record_dataset(bundle.data["digest"], bundle.data_path, bundle.data["format"],
                                       bundle.data["rows"], tokenize.length_stats(bundle.token_lengths))
        atomic.write_json(Path(cfg.run_dir) / "run.json", settings.to_dict(cfg))
        db.create_run(run_id, project, model=bundle.model.name, model_path=str(bundle.model.path),
                      dataset_id=dataset_id, data_path=bundle.data_path, strategy=p.strategy,
                      config=settings.to_dict(cfg), plan=p.to_dict(), hardware=bundle.hardware.to_dict(),
                      run_dir=cfg.run_dir, total_steps=cfg.max_steps or p.total_steps)
        return cfg
    finally:
        db.close()


def start_run(run_id: str, resume: bool = False, on_event=None, on_finished=None) -> TrainerJob:
    run_dir = paths.run_dir(run_id)
    config = run_dir / "run.json"
    if not config.is_file():
        raise KnownError(f"{config}: the run's config file is missing, so it cannot be started or resumed.")
    return TrainerJob(config, run_dir, resume=resume, on_event=on_event, on_finished=on_finished).start()


def get_run(run_id: str) -> dict:
    db = open_history()
    try:
        run = db.run(run_id)
    finally:
        db.close()
    return with_liveness(run)


def list_runs(project: str | None = None) -> list[dict]:
    db = open_history()
    try:
        return [with_liveness(r) for r in db.runs(project)]
    finally:
        db.close()


def with_liveness(run: dict) -> dict:
    """A run marked running whose trainer is gone was interrupted (machine off, process killed)."""
    if run.get("status") == history.RUNNING and run.get("pid") and not _alive(run["pid"]):
        run = {**run, "status": "interrupted"}
    return run


def _alive(pid: int) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def chat_models(run: str | None = None, model: str | None = None):
    """(model, tokenizer) for a run's result or a plain model."""
    from core import inference

    if run:
        r = get_run(run)
        return inference.load(r["model_path"], r["strategy"], Path(r["run_dir"]) / "result")
    return inference.load(resolve_model(model or model_source.DEFAULT_NAME).path)


def chat(prompt: str, run: str | None = None, model: str | None = None, system: str | None = None,
         max_new_tokens: int = 128) -> str:
    from core import inference

    m, tok = chat_models(run, model)
    return inference.reply(m, tok, prompt, system, max_new_tokens)


def export_run(run: str, fmt: str, out: str, quant: str | None = None, progress: Progress | None = None) -> Path:
    from core import export

    r = get_run(run)
    path = export.export(r, fmt, out, quant, progress)
    db = open_history()
    try:
        db.add_export(r["id"], fmt, str(path), export.folder_size(path), quant)
    finally:
        db.close()
    return path
