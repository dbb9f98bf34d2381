"""The verbs of the app as plain functions, shared by the CLI and the UI.

Each takes plain values (and a Progress where it is long) and returns plain values or raises a
KnownError. Nothing here knows about terminals or windows.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from app import answerers, paths, supervisor
from core import atomic, hardware, history, inference, model_source, objectives, planner, results
from core import settings
from core.data import dataset as data_mod
from core.data import readers, scores, tokenize
from core.data.formats import preference, rated
from core.data import source as data_source
from core.conversation import Conversation
from core.errors import KnownError
from core.objectives import pairs as pair_data
from core.model_shape import ModelShape
from core.progress import Progress
from core.run_config import RunConfig


def open_history() -> history.History:
    return history.History(paths.db_path())


def resolve_model(name: str, progress: Progress | None = None, plan_only: bool = False,
                  convert: bool = True) -> model_source.ModelRef:
    return model_source.resolve(name, paths.models_dir(), progress, plan_only, convert)


def load_tokenizer(ref: model_source.ModelRef):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ref.path))


def machine_profile(hardware_file: str | None = None, reprobe_disk: bool = False) -> hardware.HardwareProfile:
    if hardware_file:
        return hardware.load(hardware_file)
    with open_history() as db:
        return hardware.profile_machine(paths.home(), db, reprobe=reprobe_disk)


def what_if_profiles() -> list[tuple[str, str]]:
    """(label, file) of each hardware profile shipped in resources/hardware, smallest GPU first, to plan for
    a machine you do not have (`plan --hardware FILE`)."""
    found = [(hardware.load(path), str(path)) for path in (paths.RESOURCES / "hardware").glob("*.json")]
    found.sort(key=lambda pair: (sum(g.total_bytes for g in pair[0].gpus), pair[1]))
    return [(profile.source.removeprefix("what-if: "), path) for profile, path in found]


def inspect_data(path: str, model: str | None = None, seq_len: int | None = None,
                 progress: Progress | None = None, mapping: dict | None = None, on_bad: str = "skip",
                 good_above: float | None = None, train_on: str | None = None) -> dict:
    """What the file holds: format, rows, problems, "columns" (see data_columns) and, given a model, token
    statistics and a preview.

    With a model, "context" is the model's context length (None when its config does not say), "tokens"
    holds the length statistics and histogram (and, given seq_len, the rows it cuts), "tokens_per_epoch"
    and "trained_tokens_per_epoch" count what one epoch feeds and trains, "preview_rows" holds the first
    rows as segments marked trained or not, and "preview" the first row's rendered text. Scored answers are rated
    above `good_above` (None: the middle of their scores; core/data/scores.py), and "scores" says how. The
    preview marks what a run would learn from: `train_on` (RunConfig.train_on), or by default every assistant
    answer, a preference pair's or a rated conversation's last one, as their objectives learn.
    """
    from core.data import token_report

    progress = progress or Progress()
    ds = read_dataset(path, progress, mapping, on_bad, good_above)
    report = {**ds.summary(), "problem_list": [str(p) for p in ds.problems[:50]], "columns": data_columns(path)}
    if ds.format == rated.NAME:  # how many of each: KTO weighs the two kinds to balance (core/objectives/kto.py)
        good, bad = rating_counts(ds.examples)
        report["ratings"] = {"good": good, "bad": bad}
    if model:
        ref = resolve_model(model, progress, plan_only=True, convert=False)  # its tokenizer and config alone
        tok = load_tokenizer(ref)
        context = report["context"] = ref.config().get("max_position_embeddings")
        train_on = train_on or ("last" if ds.format in (preference.NAME, rated.NAME) else "assistant")
        found = token_report.token_report(ds.examples, tok, seq_len=seq_len, context=context, train_on=train_on,
                                          on_progress=_counting(progress, len(ds.examples)))
        report["tokens"] = found["stats"]
        report["token_lengths"] = found["lengths"]
        for key in ("tokens_per_epoch", "trained_tokens_per_epoch", "rows_without_trained_tokens",
                    "longer_than_context"):
            report[key] = found[key]
        if seq_len:
            report["truncated_at_seq_len"] = found["stats"].get("truncated_rows", 0)
        report["problem_list"] += [f"{src}: {n} tokens, longer than the model's context ({context}); it will be cut"
                                   for src, n in found["too_long"]]
        rows = found["preview"]
        if ds.format == preference.NAME:  # the first pair's other side, right after its chosen one
            other = token_report.token_report(pair_data.Rejected(ds.examples[:1]), tok, seq_len=seq_len,
                                              train_on=train_on, preview_rows=1)
            rejected = [dict(r, source=f"{r['source']}, its rejected answer") for r in other["preview"]]
            rows = rows[:1] + rejected + rows[1:]
        if ds.format == rated.NAME:  # each answer's rating beside its source
            rating = {e.source: e for e in ds.examples[:len(rows) * 4]}
            rows = [dict(r, source=f"{r['source']}, rated {'good' if e.desirable else 'bad'}"
                                   + (f" (score {e.score:g})" if e.score is not None else ""))
                    if (e := rating.get(r["source"])) else r for r in rows]
        report["preview_rows"] = [dict(row, text=token_report.marked_text(row["segments"])) for row in rows]
        first = ds.examples[0]
        report["preview"] = (tokenize.chat_text(tok, first) if first.messages else first.text)[:2000]
        report["warnings"] += ds.template_notes(tok)  # how this model's text holds the calls and the reasoning
    return report


def run_line(summary: dict) -> float | None:
    """The line a run rates scored answers by (its data summary's), so its held-out rows and later evaluations are
    rated as its training rows were; None for data without scores."""
    return (summary.get("scores") or {}).get("good_above")


def rating_counts(rows) -> tuple[int, int]:
    """(answers rated good, answers rated bad) of rated answers (a dataset's examples)."""
    good = sum(1 for e in rows if e.desirable)
    return good, len(rows) - good


def read_dataset(path: str, progress: Progress, mapping: dict | None, on_bad: str,
                 good_above: float | None = None, runs_line: float | None = None) -> data_mod.Dataset:
    """dataset.load with a progress bar over the bytes read (a small file is read before the first update).
    Scored answers are rated above good_above, refused for data without scores where it would mean nothing, or
    else above the line a run drew on its own data (runs_line: applied where there are scores)."""
    line = good_above if good_above is not None else runs_line
    ds = data_mod.load(path, on_bad=on_bad, mapping=mapping, good_above=line,
                       on_progress=lambda f: progress.update(f, "Reading the dataset"))
    if good_above is not None and not ds.scores:
        raise KnownError(f"{ds.label or ds.path}: a line for good answers ({good_above:g}) rates scored answers, and "
                         "this data has no 'score' column; leave the line out or map a column to 'score'.")
    return ds


def _counting(progress: Progress, rows: int):
    def report(done: int) -> None:
        progress.update(done / max(1, rows), f"Counting tokens ({done:,} of {rows:,} rows)")
    return report


def data_columns(path: str, rows: int = 20, progress: Progress | None = None) -> list[str]:
    """The column names of the first object rows, in file order, for choosing a column mapping.

    Only the start of the file is read, so this works (and is quick) when detection or the whole file fails.
    """
    columns: dict[str, None] = {}
    source = data_source.locate(path)
    found = readers.read(source.root, readers.Reading(), source.files)
    try:
        seen = 0
        for n, (_, row) in enumerate(found):
            if isinstance(row, dict):
                columns.update(dict.fromkeys(map(str, row)))
                seen += 1
            if seen >= rows or n >= 10 * rows:  # a file of bad rows is not read through
                break
    finally:
        found.close()
    return list(columns)


@dataclass
class PlanBundle:
    """Everything a run is made from: the plan and the inputs it was made for."""

    plan: planner.Plan
    model: model_source.ModelRef
    data_path: str
    data: dict  # dataset summary
    hardware: hardware.HardwareProfile
    token_lengths: list[int] = field(repr=False, default_factory=list)
    mapping: dict | None = None  # the column mapping the data was read with (None: detected)
    on_bad: str = "skip"  # what bad rows do: skip (left out, listed) or stop
    context: int | None = None  # the model's context in tokens, as its config states it (None: it does not say)
    eval_data: str = ""  # a separate validation set the run measures on ("": rows held out of the data)


def make_plan(model: str, data: str, wishes: planner.Wishes | None = None, hardware_file: str | None = None,
              progress: Progress | None = None, mapping: dict | None = None, on_bad: str = "skip",
              eval_data: str | None = None, good_above: float | None = None, plan_only: bool = False,
              convert: bool = True) -> PlanBundle:
    """The plan for training `model` on `data`; `eval_data`, a separate validation set (by default a cached hub
    dataset's own validation split, when `data` names its train split and no share to hold out was asked).
    Scored answers are rated above `good_above` (None: the middle of the data's scores), the validation set's
    by the same line. `plan_only`: the model's config and tokenizer will do (`bundle.model.missing` says what
    training it would need besides); `convert` False: a GGUF is read from its header, not converted (a plan to
    show, not one a run starts from)."""
    progress = progress or Progress()
    wishes = wishes or planner.Wishes()
    # the cheap checks first: a wrong path should not wait for a model conversion
    ds = read_dataset(data, progress, mapping, on_bad, good_above)
    if ds.scores:
        wishes = replace(wishes, rating_note=f"Rated by their {scores.describe(ds.scores)}.")
    own = data_source.validation_split(data) if eval_data is None and wishes.eval_fraction is None else None
    eval_data = eval_data or own
    if eval_data:
        held = read_dataset(eval_data, progress, mapping, on_bad, runs_line=run_line(ds.summary()))
        wishes = replace(wishes, eval_rows=len(held.examples), eval_source=(
            f"{eval_data}, the dataset's own validation split" if eval_data == own else eval_data))
    ref = resolve_model(model, progress, plan_only, convert)
    tokenizer = load_tokenizer(ref)
    lengths = tokenize.token_lengths(ds.examples, tokenizer, _counting(progress, len(ds.examples)))
    unpaired = ds.format == preference.NAME and wishes.objective and objectives.learns_rated(wishes.objective)
    if ds.format == preference.NAME and not unpaired:  # a pair is as long as its longer side, both in one batch
        wishes = replace(wishes, pairs=True)
        rejected = tokenize.token_lengths(pair_data.Rejected(ds.examples), tokenizer)
        lengths = [max(a, b) for a, b in zip(lengths, rejected)]
    elif unpaired or (ds.format == rated.NAME
                      and objectives.learns_rated(wishes.objective or objectives.DEFAULT_FOR_RATED)):
        rows = pair_data.Unpaired(ds.examples) if unpaired else ds.examples  # KTO on pairs: each pair split in two
        if unpaired:  # the chosen answers, then the rejected ones: the chosen sides' lengths are counted already
            lengths = lengths + tokenize.token_lengths(pair_data.Rejected(ds.examples), tokenizer)
            wishes = replace(wishes, rating_note="Each preference pair is split in two: its chosen answer rated good, "
                                                 "its rejected one rated bad.")
        wishes = replace(wishes, rated=True, ratings=rating_counts(rows))  # each batched with its mismatched row
        mismatched = tokenize.token_lengths(pair_data.Mismatched(rows), tokenizer)
        lengths = [max(a, b) for a, b in zip(lengths, mismatched)]
    elif ds.format == rated.NAME:  # supervised on rated answers: the ones rated good alone train
        wishes = replace(wishes, rated=True)
        lengths = [n for n, e in zip(lengths, ds.examples) if e.desirable]
    if hardware_file is None:
        answerers.release()  # planned for the memory free on this machine, without what the Try-it box holds
    hw = machine_profile(hardware_file)
    config = ref.config()
    plan = planner.make_plan(hw, config, lengths, wishes)
    measured = None if hardware_file else calibration_for(str(ref.path), plan.strategy, plan.gpu_name or "cpu",
                                                          plan.objective)
    if measured:  # an earlier run of this model and strategy here measured its true peak: plan with it
        plan = planner.make_plan(hw, config, lengths, wishes, calibration=measured)
    return PlanBundle(plan, ref, data_source.canonical(data), ds.summary(), hw, lengths, mapping, on_bad,
                      context=ModelShape.from_config(config).context,
                      eval_data=data_source.canonical(eval_data) if eval_data else "")


def calibration_for(model_path: str, strategy: str, device: str, objective: str = "sft") -> dict | None:
    """What earlier runs of this model and strategy on this device (a GPU's name, or 'cpu') measured, as the
    planner takes it, preference tuning's apart from supervised runs' (history.calibration_kind); None when
    nothing usable was."""
    with open_history() as db:
        found = db.last_calibration(model_path, history.calibration_kind(strategy, objective), device)
    if not found or not found.get("factor"):
        return None
    # A factor far from 1 means something else was going on (another program, a different data shape).
    usable = {"source": found.get("source", "")}
    if 0.5 <= found["factor"] <= 2.0:
        usable["factor"] = found["factor"]
    times = [t for t in found.get("time_factors", [found.get("time_factor")]) if t and 0.1 <= t <= 10]
    if times:  # the median of the last few runs' paces: one slow or fast run does not swing the next plan
        usable["time_factor"] = statistics.median(times)
        if len(times) > 1:
            usable["time_source"] = f"the median of the last {len(times)} runs of this model and strategy here"
    return usable if len(usable) > 1 else None


def create_run(bundle: PlanBundle, project: str = "default", seed: int = 42, name: str = "",
               **overrides) -> RunConfig:
    """Record the run in the history (with the person's `name` for it, if any) and write its config file; the
    trainer starts from that file."""
    from core import strategies

    strategies.get(bundle.plan.strategy)  # refuse not-built strategies before anything is written
    name = history.check_name(name)
    with open_history() as db:
        run_id = history.new_run_id()
        p = bundle.plan
        fields = dict(
            run_id=run_id, run_dir=str(paths.run_dir(run_id)), db_path=str(paths.db_path()),
            model_path=str(bundle.model.path), data_path=bundle.data_path, project=project,
            model_name=bundle.model.name, strategy=p.strategy, device=p.device, precision=p.precision,
            seq_len=p.seq_len, micro_batch=p.micro_batch, grad_accum=p.grad_accum,
            max_steps=p.total_steps if p.time_capped else p.max_steps, time_limit_s=p.time_limit_s,
            epochs=p.epochs, lr=p.lr, seed=seed, gradient_checkpointing=p.gradient_checkpointing,
            strategy_options=p.options, packing=p.packing, kernels=p.kernels, data_mapping=bundle.mapping or {},
            bad_rows=bundle.on_bad, stop_early=p.stop_early, keep_best=p.keep_best, eval_data=bundle.eval_data,
            good_above=run_line(bundle.data), tools=(bundle.data.get("tool_use") or {}).get("tools") or [],
            thinks=bool(bundle.data.get("reasoning_rows")),
            objective=p.objective, beta=p.beta, train_on=p.train_on,
            plan=p.to_dict(), hardware=bundle.hardware.to_dict(),
        )
        fields.update(overrides)  # every planned setting can be overridden (STYLE §6)
        cfg = settings.from_dict(RunConfig, fields, source="run settings")
        dataset_id = db.record_dataset(bundle.data["digest"], bundle.data_path, bundle.data["format"],
                                       bundle.data["rows"], tokenize.length_stats(bundle.token_lengths))
        atomic.write_json(Path(cfg.run_dir) / "run.json", settings.to_dict(cfg))
        atomic.write_json(Path(cfg.run_dir) / "token_lengths.json", bundle.token_lengths)  # for re-planning
        db.create_run(run_id, project, model=bundle.model.name, model_path=str(bundle.model.path),
                      dataset_id=dataset_id, data_path=bundle.data_path, strategy=p.strategy,
                      config=settings.to_dict(cfg), plan=p.to_dict(), hardware=bundle.hardware.to_dict(),
                      run_dir=cfg.run_dir, total_steps=cfg.max_steps or p.total_steps, name=name or None)
        return cfg


def start_run(run_id: str, resume: bool = False, on_event=None, on_finished=None) -> supervisor.TrainerJob:
    """Start the run's trainer (it re-plans by itself when it runs out of memory: core.replanner.replan_run)."""
    answerers.release()  # the trainer gets the memory the Try-it box held
    run_dir = paths.run_dir(run_id)
    config = run_dir / "run.json"
    if not config.is_file():
        raise KnownError(f"{config}: the run's config file is missing, so it cannot be started or resumed.")
    return supervisor.TrainerJob(config, run_dir, resume=resume, on_event=on_event, on_finished=on_finished).start()


def rename_run(run_id: str, name: str) -> str:
    """Name a run ('' takes its name away); returns its id."""
    with open_history() as db:
        return db.rename(run_id, name)


def get_run(run_id: str) -> dict:
    with open_history() as db:
        run = db.run(run_id)
    return with_liveness(run)


def list_runs(project: str | None = None) -> list[dict]:
    with open_history() as db:
        return [with_liveness(r) for r in db.runs(project)]


def with_liveness(run: dict) -> dict:
    """A run marked running whose trainer is gone was interrupted (machine off, process killed)."""
    if run.get("status") == history.RUNNING and run.get("pid") and not supervisor.alive(run["pid"]):
        run = {**run, "status": "interrupted"}
    return run


def live_runs() -> list[str]:
    """Runs whose trainer is training now (left running in the background by an earlier window), newest first."""
    return [r["id"] for r in list_runs() if r.get("status") == history.RUNNING]


def attach_run(run_id: str, on_event=None, on_finished=None) -> supervisor.AttachedJob:
    """Follow a run training in another process: its events so far, then live; stop, pause and ask work."""
    run = get_run(run_id)
    if run.get("status") != history.RUNNING:
        raise KnownError(f"Run {run_id} is not training now ({run.get('status')}); resume it instead.")
    return supervisor.AttachedJob(Path(run["run_dir"]), run["pid"], on_event=on_event, on_finished=on_finished)


def run_plans(run_id: str) -> list[dict]:
    with open_history() as db:
        return db.plans(run_id)


def run_weights(run: str, weights: str = results.AUTO) -> dict:
    """The run from the history with the folder of the weights that answer for it (core/results.py)."""
    return results.pick(get_run(run), weights)


@dataclass(frozen=True)
class GoingOn:
    """What a new run that goes on from an earlier run's weights takes from it (`going_on`)."""

    model: str  # the earlier run's base model folder: the new run's base too
    strategy: str  # the same strategy: an adapter goes on as the same kind of adapter
    options: dict  # the strategy settings its saved weights depend on (an adapter's rank, targets, scale)
    start_from: str  # the folder of the weights (result/ or best/)
    continues: dict  # {"run", "weights", "step"}, kept in the new run's config for the history

    def run_settings(self) -> dict:
        """The RunConfig fields create_run takes for it."""
        return {"start_from": self.start_from, "continues": self.continues}

    def apply(self, wishes: planner.Wishes) -> planner.Wishes:
        """The person's wishes for the new run on this strategy, its settings under the ones they gave."""
        if wishes.strategy and wishes.strategy != self.strategy:
            raise KnownError(f"Going on from run {self.continues['run']} keeps its strategy ({self.strategy}), whose "
                             "weights it starts from; leave the strategy to it.")
        return replace(wishes, strategy=self.strategy, options={**self.options, **wishes.options})

    def describe(self) -> str:
        return results.continued_text(self.continues)


def going_on(run: str, weights: str = results.AUTO) -> GoingOn:
    """A new run goes on from `run`'s weights (its `weights`: by default those of its lowest validation loss when
    kept): on the same base, with the same strategy and the settings those weights depend on, as the start."""
    from core import strategies

    r = run_weights(run, weights)
    folder = results.need(r)
    choice = r["picked"]
    kept = strategies.get(r["strategy"], need_built=False).kept_going_on
    options = {k: v for k, v in ((r.get("config") or {}).get("strategy_options") or {}).items() if k in kept}
    return GoingOn(r["model_path"], r["strategy"], options, str(folder),
                   {"run": r["id"], "weights": choice.which, "step": choice.step})


def chat_models(run: str | None = None, model: str | None = None, keep: bool = False,
                progress: Progress | None = None, weights: str = results.AUTO):
    """(model, tokenizer) for a run's result (its `weights`) or a plain model; with keep, held for the next question
    (app/answerers.py)."""
    load = answerers.get if keep else inference.load
    if run:
        r = run_weights(run, weights)
        return load(r["model_path"], r["strategy"], results.folder(r), progress=progress)
    return load(resolve_model(model or model_source.DEFAULT_NAME).path, progress=progress)


def chat(prompt: str | None, run: str | None = None, model: str | None = None, system: str | None = None,
         max_new_tokens: int | None = None, keep: bool = False, progress: Progress | None = None,
         conversation: Conversation | None = None, temperature: float = 0.0, weights: str = results.AUTO,
         tools: list[dict] | None = None) -> str:
    """One answer from a run's result or a model (greedy, or sampled at `temperature`); within `conversation` when
    one is given (its system message and tools then count, not `system` and `tools`), which then holds this
    question and its answer (`prompt` None: the answer after the tool results given in it). `tools`: functions the
    model may call (tool_calls.read_file); None offers a run's own (run_tools), [] none. `max_new_tokens` None: the
    default, with room to think for a run whose data carried reasoning (inference.room)."""
    m, tok = chat_models(run, model, keep, progress, weights)
    if progress is not None:
        progress.update(None, "Thinking…")
    config = (get_run(run).get("config") or {}) if run else {}  # its tools (run_tools), whether it thinks first
    if conversation is None:
        conversation = Conversation(system, tools=(config.get("tools") or None) if tools is None else (tools or None))
    return conversation.ask(m, tok, prompt, max_new_tokens or inference.room(bool(config.get("thinks"))), temperature)


def run_tools(run: str) -> list[dict] | None:
    """The functions the run's data offered (its first row's tools), offered again when its model is tried."""
    return (get_run(run).get("config") or {}).get("tools") or None


def export_run(run: str, fmt: str, out: str, quant: str | None = None, progress: Progress | None = None,
               nf4_base: bool = False, weights: str = results.AUTO, dtype: str = "auto") -> Path:
    from core import export, model_card

    answerers.release()  # the export may hold a merged model, or two for its check: it gets the memory first
    r = run_weights(run, weights)
    if fmt == "gguf":  # recorded as written (q4_k_m when left out), in lower case as the file names it
        from core.gguf_export import tensor_types

        quant = (quant or tensor_types.DEFAULT).lower()
    with open_history() as db:  # the model card tells the run's losses and measurements
        story = model_card.gather(db, r)
    path = export.export(r, fmt, out, quant, progress, nf4_base=nf4_base, story=story, dtype=dtype)
    with open_history() as db:
        db.add_export(r["id"], fmt, str(path), export.folder_size(path), quant)
    return path
