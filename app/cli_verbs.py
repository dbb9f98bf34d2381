"""What each CLI verb does. Output for people by default, JSON with --json."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import shutil
import sys
import textwrap
import time

from app import evaluations
from app import operations as ops
from app.progress_bar import TerminalProgress, format_duration
from app.terminal_marks import for_terminal
from core import hardware, plan_text, planner, results, strategies
from core.data import scores, split
from core.data.formats import tool_calls
from core.errors import KnownError
from core.words import counted, seconds_of
from tuneforge_kernels import OPS


def out(obj) -> None:
    try:
        print(json.dumps(obj, default=str), flush=True)
    except BrokenPipeError:  # called from the trainer's event thread too, where main's handler cannot see it
        stdout_gone()


def stdout_gone() -> None:
    """Whoever read our output has gone (`tuneforge train --json | head -3`): what is still to be printed goes
    nowhere instead of raising, and a run being followed goes on to its end, recorded as always."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


GIB = 1024**3


def wishes_of(a) -> planner.Wishes:
    return planner.Wishes(strategy=a.strategy, micro_batch=a.batch_size, grad_accum=a.grad_accum, seq_len=a.seq_len,
                          lr=a.lr, max_steps=a.max_steps, epochs=a.epochs, device=a.device, gpu_index=a.gpu,
                          checkpointing=a.checkpointing,
                          memory_cap_bytes=int(a.memory_cap * GIB) if a.memory_cap else None,
                          options=dict(strategies.parse_option(a.strategy, text) for text in a.option),
                          packing=a.packing, kernels=kernels_of(a.kernels), stop_early=a.stop_early,
                          keep_best=a.keep_best, eval_fraction=a.eval_fraction,
                          time_limit_s=time_limit_of(a.time_limit),
                          objective=None if a.objective == "auto" else a.objective, beta=a.beta,
                          train_on=a.train_on)


def time_limit_of(text: str | None) -> float | None:
    """--time-limit DURATION in seconds (None: no limit)."""
    if text is None:
        return None
    seconds = seconds_of(text)
    if seconds is None:
        raise KnownError(f"--time-limit {text}: expected a duration above zero, such as 45m, 2h or 1h30m.")
    return seconds


def kernels_of(text: str) -> list[str] | None:
    """--kernels auto|none|NAME,NAME → the planner's wish (None: auto)."""
    text = text.strip().lower()
    if text == "auto":
        return None
    names = [] if text == "none" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPS]
    if unknown or (text != "none" and not names):
        raise KnownError(f"--kernels {text}: expected auto, none or names from {', '.join(OPS)}, comma-separated.")
    return names


def mapping_of(a) -> dict | None:
    """--map FIELD=COLUMN ... as a column mapping (None: detect the schema)."""
    mapping = {}
    for text in getattr(a, "map", None) or []:
        field, sep, column = text.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise KnownError(f"--map {text}: expected FIELD=COLUMN, e.g. --map prompt=question.")
        mapping[field.strip()] = column.strip()
    return mapping or None


def check_positive(a) -> None:
    for name in ("max_steps", "epochs", "seq_len", "lr", "batch_size", "grad_accum", "memory_cap", "eval_every"):
        value = getattr(a, name, None)
        if value is not None and value <= 0:
            raise KnownError(f"--{name.replace('_', '-')} must be above 0 (got {value}).")
    if (getattr(a, "stop_early", None) or 0) < 0:
        raise KnownError(f"--stop-early must be 0 (off) or a number of checks (got {a.stop_early}).")
    fraction = getattr(a, "eval_fraction", None)
    if fraction is not None and not 0 <= fraction < 0.5:
        raise KnownError(f"--eval-fraction must be at least 0 and below 0.5 (got {fraction}).")
    if fraction is not None and getattr(a, "eval_data", None):
        raise KnownError("--eval-fraction holds rows out of the data and --eval-data validates on another set; "
                         "give one of them.")


def cmd_profile(a) -> int:
    prof = ops.machine_profile(reprobe_disk=a.probe_disk)
    if a.json:
        out(prof.to_dict())
    else:
        print("\n".join(hardware.describe(prof)))
    return 0


def cmd_plan(a) -> int:
    check_positive(a)
    wishes, going = wishes_going_on(a)
    bundle = ops.make_plan(a.model, a.data, wishes, hardware_file=a.hardware, progress=_progress(a),
                           mapping=mapping_of(a), on_bad=a.bad_rows, eval_data=a.eval_data, good_above=a.good_above,
                           plan_only=True, convert=False)
    if a.json:
        out({"plan": bundle.plan.to_dict(), "model": str(bundle.model.path), "data": bundle.data,
             "eval_data": bundle.eval_data, "hardware": bundle.hardware.source, "model_missing": bundle.model.missing})
    else:
        where = bundle.model.name if bundle.model.note else bundle.model.path  # (not the header's hidden folder)
        print(f"Model: {bundle.model.label} ({where})")
        if bundle.model.missing:
            print(f"Plan only: {bundle.model.missing}.")
        if bundle.model.note:
            print(f"The model was {bundle.model.note}.")
        print(f"Data: {bundle.data['rows']} rows ({bundle.data['format']}) from {bundle.data_path}")
        print(f"Hardware: {bundle.hardware.source}")
        if going:
            print(f"Goes on from {going.describe()}")
        print("\n".join(plan_text.describe(bundle.plan)))
    return 0


def cmd_train(a) -> int:
    check_positive(a)
    wishes, going = wishes_going_on(a)
    bundle = ops.make_plan(a.model, a.data, wishes, progress=_progress(a), mapping=mapping_of(a), on_bad=a.bad_rows,
                           eval_data=a.eval_data, good_above=a.good_above)
    cfg = ops.create_run(bundle, project=a.project, seed=a.seed, name=a.name,
                         memory_cap_bytes=int(a.memory_cap * GIB) if a.memory_cap else 0,
                         eval_fraction=a.eval_fraction, eval_every=a.eval_every or 0,
                         **(going.run_settings() if going else {}))
    if a.json:
        out({"event": "plan", "run_id": cfg.run_id, "plan": bundle.plan.to_dict()})
    else:
        print(f"Run {cfg.run_id}: {bundle.plan.strategy} on {bundle.plan.device}, "
              f"{counted(bundle.plan.total_steps, 'step')} (about {format_duration(bundle.plan.total_time_s)})."
              " Ctrl-C stops with a checkpoint.")
    return follow(cfg.run_id, resume=False, as_json=a.json)


def wishes_going_on(a) -> tuple[planner.Wishes, ops.GoingOn | None]:
    """The plan and train verbs' wishes; with --from, the earlier run's model, strategy and the settings its weights
    depend on under them (the person's --option values on top), and what the new run takes from it."""
    if not a.from_run:
        if not a.model:
            raise KnownError(f"tuneforge {a.verb}: the following arguments are required: --model (or --from RUN); "
                             f"see `tuneforge {a.verb} --help`.")
        return wishes_of(a), None
    going = ops.going_on(a.from_run, a.weights)
    if a.model:
        raise KnownError(f"--from {going.continues['run']} goes on with that run's model ({going.model}); leave "
                         "--model out.")
    wishes = going.apply(wishes_of(a))  # (refuses another --strategy)
    a.model = going.model
    return wishes, going


def cmd_resume(a) -> int:
    run = ops.get_run(a.run)
    if run["status"] == "done":
        raise KnownError(f"Run {run['id']} already finished; nothing to resume (chat with it or export it).")
    if run["status"] == "running":
        raise KnownError(f"Run {run['id']} is still running (process {run['pid']}); stop it before resuming.")
    if not a.json:
        print(f"Resuming run {run['id']} from step {run['steps_done']} of {run['total_steps']}.")
    return follow(run["id"], resume=True, as_json=a.json)


def follow(run_id: str, resume: bool, as_json: bool) -> int:
    """Start the trainer and show its events until it ends; Ctrl-C asks it to stop with a checkpoint."""
    bar = None if as_json else TerminalProgress()

    def on_event(e: dict) -> None:
        if as_json:
            out({**e, "run_id": run_id})
        else:
            bar.event(e)

    job = ops.start_run(run_id, resume=resume, on_event=on_event)
    stopping = False
    while True:
        try:
            outcome = job.wait(0.25)
            if outcome is not None:
                break
        except KeyboardInterrupt:
            if stopping:
                job.kill()
            else:
                stopping = True
                if not as_json:
                    bar.note("Stopping after this step and saving a checkpoint (Ctrl-C again to kill)…")
                job.stop()
    if bar:
        bar.close()
    if as_json:
        out({"event": "finished", "run_id": run_id, "status": outcome.status, "text": outcome.text,
             "exit_code": outcome.exit_code})
    else:
        print(f"Run {run_id}: {outcome.text}.")
        if outcome.status == "stopped":
            print(f"Continue it with: tuneforge resume --run {run_id}")
        if outcome.ok:  # what people do next with a trained run
            print(f"Next: tuneforge chat --run {run_id} \"a question\"  ·  tuneforge export --run {run_id} "
                  f"--format gguf --out DIR  ·  tuneforge show {run_id}")
        print(run_id)  # last, alone, for scripts
    return 0 if outcome.ok else (outcome.exit_code if outcome.exit_code and outcome.exit_code > 0 else 1)


def cmd_strategies(a) -> int:
    listed = [{"name": s.name, "summary": s.summary, "built": s.built, "result": s.result,
               "options": strategies.describe_options(s.name)} for s in strategies.REGISTRY.values()]
    if a.json:
        out(listed)
        return 0
    width = min(shutil.get_terminal_size((100, 24)).columns, 100)  # help of a paragraph's length, kept readable
    for s in listed:
        print(f"{s['name']}{'' if s['built'] else ' (planned, not built yet)'}: {s['summary']}")
        for o in s["options"]:
            print(textwrap.fill(f"{o['name']} = {o['default']!r}  {o['help']}", width, initial_indent="    ",
                                subsequent_indent="        ", break_on_hyphens=False))
    return 0


def cmd_runs(a) -> int:
    runs = ops.list_runs(a.project)
    if a.json:
        out([{**{k: v for k, v in r.items() if k not in ("config", "hardware")},
              "best_weights": results.best_of(r["run_dir"]) if r.get("run_dir") else None} for r in runs])
        return 0
    if not runs:
        print("No runs yet; start one with `tuneforge train --model default --data resources/demo/pirate_chat.jsonl`.")
        return 0
    from app.history_service import disk_bytes, disk_text, strategy_text

    width = max(8, *(len(strategy_text(r)) for r in runs))  # "qlora (SimPO)" as wide as it needs
    print(f"{'run':22} {'project':12} {'status':12} {'strategy':{width}} {'steps':>9} {'loss':>7} {'disk':>8}  model")
    for r in runs:  # (a named run shows its name after the model)
        loss = f"{r['final_loss']:.3f}" if r.get("final_loss") is not None else "-"
        steps = f"{r.get('steps_done') or 0}/{r.get('total_steps') or '?'}"
        disk = disk_text(disk_bytes(r.get("run_dir")))
        print(f"{r['id']:22} {r['project'][:12]:12} {r['status']:12} {strategy_text(r):{width}} {steps:>9} {loss:>7} "
              f"{disk:>8}  {r['model']}" + (f"  “{r['name']}”" if r.get("name") else ""))
    return 0


def cmd_rename(a) -> int:
    run_id = ops.rename_run(a.run, a.name)
    print(f"Run {run_id} is now named '{' '.join(a.name.split())}'." if a.name.strip() else
          f"Run {run_id} has no name now.")
    return 0


def cmd_delete(a) -> int:
    from app import run_removal

    found = run_removal.removals(a.runs, checkpoints=a.checkpoints)  # one that cannot go stops them all, first
    if not a.yes:
        for what in found:
            print(f"Would delete {what.text()}.")
        raise KnownError(f"Nothing was deleted; add --yes to delete {'it' if len(found) == 1 else 'them'}.")
    for what in found:
        print(f"Deleted {run_removal.delete_run(what.run_id, checkpoints=a.checkpoints).text()}.", flush=True)
    return 0


def cmd_plans(a) -> int:
    run = ops.get_run(a.run)
    plans = ops.run_plans(run["id"])
    if a.json:
        out(plans)
        return 0
    for p in plans:
        plan = p["plan"]
        print(f"Plan {p['seq']} ({p['reason']}): {plan.get('strategy')}, micro-batch {plan.get('micro_batch')} × "
              f"{plan.get('grad_accum')}, checkpointing {'on' if plan.get('gradient_checkpointing') else 'off'}, "
              f"estimated peak {plan.get('peak_bytes', 0) / GIB:.2f} GiB of {plan.get('memory_limit', 0) / GIB:.2f}")
        cal = p.get("calibration")
        if cal and cal.get("factor"):
            print(f"  measured on {cal['device']}: peak memory {cal['factor']:.2f}× the estimate"
                  + (f", time per step {cal['time_factor']:.2f}×" if cal.get("time_factor") else "")
                  + (f"; its pace is not kept: {cal['pace_note']}" if cal.get("pace_note") else ""))
    return 0


def cmd_chat(a) -> int:
    if a.max_new_tokens is not None and a.max_new_tokens <= 0:
        raise KnownError("--max-new-tokens must be above 0.")
    if not 0 <= a.temperature <= 5:
        raise KnownError(f"--temperature {a.temperature:g}: give 0 (the most likely answer) up to 5.")
    tools = [] if a.tools == "none" else tool_calls.read_file(a.tools) if a.tools else None
    if a.run:
        say_weights(ops.run_weights(a.run, a.weights)["picked"], "Answering with")
        if tools is None and (tools := ops.run_tools(a.run)):
            print(f"Offering the tools the run's data offered: {', '.join(t['function']['name'] for t in tools)} "
                  "(--tools none offers none)", file=sys.stderr)
    if a.question is not None:
        if a.prompt is not None:
            raise KnownError(f"Both '{a.question}' and --prompt ask a question; give one of them.")
        a.prompt = a.question
    if a.prompt is None:
        if a.result:
            raise KnownError("--result goes with --prompt; in a conversation, type each result when asked for it.")
        return converse(a, tools)
    from core.conversation import Conversation

    conversation = Conversation(a.system, tools=tools)
    print(answer(a, a.prompt, conversation))
    results = list(a.result)
    while conversation.pending() and results:
        call = conversation.give(results.pop(0))
        print(f"(the result of {tool_calls.shown(call)} given)", file=sys.stderr)
        if conversation.answered():
            print(answer(a, None, conversation))
    if conversation.pending():
        print(f"(the model called {', '.join(map(tool_calls.shown, conversation.pending()))}; give what it returns "
              "with --result to see the answer after it)", file=sys.stderr)
    elif results:
        print(f"({counted(len(results), '--result value')} not used: the model made no call to take "
              f"{'it' if len(results) == 1 else 'them'})", file=sys.stderr)
    return 0


def answer(a, prompt: str | None, conversation) -> str:
    """The model's answer to `prompt` within `conversation` (None: after the tool results given), kept loaded; at a
    terminal, its thinking and calls marked."""
    return for_terminal(ops.chat(prompt, run=a.run, model=a.model, max_new_tokens=a.max_new_tokens, keep=True,
                                 conversation=conversation, temperature=a.temperature, weights=a.weights))


def converse(a, tools: list[dict] | None = None) -> int:
    """A conversation: at a terminal, a prompt and line editing; from a pipe, one question per line. The model
    loads once (app/answerers.py); each answer is followed by an empty line; /new starts over. A call the model
    makes is answered by the next line, its result (an empty one leaves the question and its calls out)."""
    from core.conversation import Conversation

    conversation = Conversation(a.system, tools=tools)
    terminal = sys.stdin.isatty()
    if terminal:
        try:  # arrow keys edit the line and recall earlier questions, where the platform has readline
            importlib.import_module("readline")  # importing it is what makes input() use it
        except ImportError:
            pass
        print("Type a message and press Enter; /new starts a new conversation; Ctrl-D ends.", file=sys.stderr)

    def read(prompt: str) -> str | None:  # a line, stripped; None at the end of the input
        try:
            line = input(prompt) if terminal else sys.stdin.readline()
        except EOFError:
            return None
        return line.strip() if line or terminal else None

    while (line := read("> ")) is not None:
        if line == "/new":
            conversation.clear()
            print("(a new conversation)", file=sys.stderr)
        elif line:
            forgotten = conversation.forgotten
            print(answer(a, line, conversation) + "\n", flush=True)
            while conversation.pending():
                if not (result := read(f"result of {tool_calls.shown(conversation.pending()[0])}> ")):
                    conversation.forget_calls()
                    print("(no result given: the question and its calls are left out)", file=sys.stderr)
                    break
                conversation.give(result)
                if conversation.answered():
                    print(answer(a, None, conversation) + "\n", flush=True)
            if conversation.forgotten > forgotten:
                print(f"(the {counted(conversation.forgotten, 'oldest message')} no longer fit the model's context "
                      "and are left out)", file=sys.stderr)
    return 0


def cmd_evaluate(a) -> int:
    longest = 1 if a.max_new_tokens is None else a.max_new_tokens  # None: the default for the run
    for flag, value, least in (("--ask", a.ask, 0), ("--rows", a.rows, 1), ("--max-new-tokens", longest, 1)):
        if value < least:
            raise KnownError(f"{flag} must be {least} or more.")
    if a.split:
        if a.data:
            raise KnownError("--data and --split both name what to measure on; give one of them.")
        a.data = evaluations.held_out_split(a.run, a.split)
        if a.data is None:
            run = ops.get_run(a.run)
            raise KnownError(f"Run {run['id']} trained on {run['data_path']}, which has no '{a.split}' split beside "
                             "the one it read; measure on a file with --data FILE.")
    if a.data is None:
        return past_evaluations(a)
    report = evaluations.evaluate_run(a.run, a.data, a.ask, a.max_new_tokens, a.rows, _progress(a), mapping_of(a), a.bad_rows,
                              a.weights, a.good_above)
    if a.json:
        print(json.dumps(report.to_dict()))
        return 0
    print(report.summary())
    for q, base, tuned in zip(report.asked, report.base_answers, report.tuned_answers):
        print(f"\n{q.source}")
        for label, text in (("asked", q.prompt), ("expected", q.expected), ("base", base), ("tuned", tuned)):
            first, *rest = text.split("\n")
            print("\n".join([f"  {label:<9} {first}"] + [" " * 12 + line if line.strip() else "" for line in rest]))
    return 0


def past_evaluations(a) -> int:
    """`evaluate --run RUN` alone: each measurement kept with the run, newest last."""
    found = evaluations.run_evaluations(a.run)
    if a.json:
        print(json.dumps([{"created_at": e["created_at"], **e["report"]} for e in found]))
    elif not found:
        how = "--split test" if evaluations.held_out_split(a.run) else "--data HELD_OUT.jsonl"
        print(f"Nothing measured for this run yet; `tuneforge evaluate --run {shlex.quote(a.run)} {how}` does it.")
    for e in [] if a.json else found:
        print(f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(e['created_at']))}  {e['report']['summary']}")
    return 0


def say_weights(choice, lead: str) -> None:
    """Tell which of a run's weights are used when they are not simply its last step's (core/results.py)."""
    if choice.which != "last":
        print(f"{lead} {choice.note}.", file=sys.stderr)


def cmd_data(a) -> int:
    from core.data.token_stats import histogram_lines

    seq_len = getattr(a, "seq_len", None)
    if seq_len is not None and seq_len <= 0:
        raise KnownError("--seq-len must be above 0.")
    report = ops.inspect_data(a.path, model=a.model, seq_len=seq_len, mapping=mapping_of(a), on_bad=a.bad_rows,
                              progress=_progress(a), good_above=a.good_above, train_on=a.train_on)
    if a.json:
        out({k: v for k, v in report.items() if k != "token_lengths"})
        return 0
    print(f"{report['path']}: {counted(report['rows'], 'usable row')}, format {report['format']}, "
          f"{counted(report['problems'], 'problem')}, {counted(report['duplicates'], 'duplicate')}")
    if report.get("schema_reason"):
        print(f"Schema: {report['schema_reason']}")
    if report["duplicates"]:
        print(f"Duplicates: {counted(report['duplicates'], 'row')} repeat an earlier one; {split.REPEATED}")
    if report.get("ratings"):
        print(f"Rated: {report['ratings']['good']:,} good, {report['ratings']['bad']:,} bad"
              + (f", by their {scores.describe(report['scores'])}" if report.get("scores") else ""))
    if report.get("tool_use") and "tokens" not in report:  # with a model, its note says how they are written
        used = report["tool_use"]
        print(f"Tools: {counted(used['rows'], 'conversation')} use tools ({counted(used['calls'], 'call')}); "
              "give --model to see how that model's text holds them")
    if report.get("reasoning_rows") and "tokens" not in report:
        print(f"Reasoning: {counted(report['reasoning_rows'], 'conversation')} with answers that carry their "
              "reasoning; give --model to see how that model's text holds it")
    for w in report.get("warnings", []):
        print(f"Note: {w}")
    for p in report["problem_list"][:20]:
        print(f"  {p}")
    if "tokens" in report:
        t = report["tokens"]
        print(f"Tokens per row: min {t['min']}, median {t['median']}, p95 {t['p95']}, max {t['max']}; "
              f"{t['total']} in all")
        print(*histogram_lines(t["histogram"]), sep="\n")
        if seq_len:
            print(f"At --seq-len {seq_len}: {t['truncated_rows']} of {t['count']} rows are cut.")
        print(f"Per epoch: {report['tokens_per_epoch']} tokens, {report['trained_tokens_per_epoch']} of them trained"
              + (f"; {counted(report['rows_without_trained_tokens'], 'row')} "
                 + ("trains nothing and is" if report["rows_without_trained_tokens"] == 1 else "train nothing and are")
                 + " left out"
                 if report["rows_without_trained_tokens"] else "") + ".")
        for row in report["preview_rows"]:
            print(f"\n{row['source']} as the model sees it (trained parts between « »):")
            print(row["text"])
    elif seq_len:
        print("--seq-len needs --model: token lengths depend on the model's tokenizer.")
    return 0


def _progress(a):
    return None if getattr(a, "json", False) else TerminalProgress().as_progress()


VERBS = {"profile": cmd_profile, "plan": cmd_plan, "train": cmd_train, "resume": cmd_resume, "runs": cmd_runs,
         "plans": cmd_plans, "rename": cmd_rename, "delete": cmd_delete, "strategies": cmd_strategies,
         "chat": cmd_chat, "data": cmd_data, "evaluate": cmd_evaluate}

