"""The trainer: a leaf script that runs one whole training from a run config file.

    python -m core.trainer RUNS/<id>/run.json [--resume]

Nothing imports this module (the app starts it as a process; a test checks). It speaks to its
parent through stdout, one JSON event per line (everything else a library prints goes to stderr,
which the parent keeps as the run's log), writes the same events to `events.jsonl` in the run's
folder for replay, records the run and its metrics in the SQLite history itself, and checkpoints
atomically, so closing the window or the CLI never loses a run.

Between steps it reads its run folder for requests (core/run_control.py): STOP, and PAUSE, during
which the model stays loaded and answers the prompts the app leaves in asks/.

Out of memory, it re-plans by itself (core.replanner.replan_run: the new plan goes into the run's
config and the history) and starts again in place from its last checkpoint: the same process id
(exec) and the same stdout, so whoever watches it, the app or nobody, sees the run go on. When one
of our kernels fails on this GPU (tuneforge_kernels.failures names it), it does the same without that kernel.

Exit codes: 0 finished, 3 stopped on request (checkpoint saved), 2 known problem, 5 out of memory
with nothing left to try, anything else a bug (traceback in the log).
"""

from __future__ import annotations

if __name__ != "__main__":
    raise ImportError("core.trainer is a script: run `python -m core.trainer RUN.json`, do not import it.")

import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path

EXIT_DONE, EXIT_KNOWN, EXIT_STOPPED, EXIT_OOM, EXIT_BUG = 0, 2, 3, 5, 1

# Stop requests are honoured from the first instant: handlers go in before the slow imports.
_stop_signalled = []
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, lambda *_: _stop_signalled.append(True))
if hasattr(signal, "pthread_sigmask"):  # a re-plan's exec blocked them across the exec (`restart`): now they count
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

# A run with a time limit checks it against its pace after this many steps of a session (the first, which pays
# for first allocations, left out), and cuts itself to the steps that fit, its schedule with it.
PACE_STEPS = 3

_active_kernels: list[str] = []  # our kernels the run's session patched in: the ones a failure can be blamed on

# Only events go to the real stdout; anything printed by libraries lands in stderr (the log).
_events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr

from core import checkpoint, cpu_share, history, memory_watch, objectives, plan_length, replanner, results  # noqa: E402
from core import inference, run_config  # noqa: E402
from core import run_control, runtime_env, settings, strategies, training, validation_watch  # noqa: E402
from core.data import dataset as data_mod  # noqa: E402
from core.data import packing, scores, split, token_cache, tokenize  # noqa: E402
from core.errors import KnownError  # noqa: E402
from core.objectives import pairs as pair_data  # noqa: E402
from core.run_config import RunConfig  # noqa: E402
from core.words import counted, duration  # noqa: E402
from tuneforge_kernels import failures  # noqa: E402

runtime_env.prepare()


class Emitter:
    def __init__(self, run_dir: Path):
        self.file = open(run_dir / "events.jsonl", "a", encoding="utf-8", buffering=1)

    def __call__(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, "at": round(time.time(), 3), **fields})
        self.file.write(line + "\n")
        try:
            _events.write(line + "\n")
        except (BrokenPipeError, ValueError):  # the parent went away: keep training, keep recording
            pass


def _every(seconds: float, report):
    """report(value), at most once per `seconds` (progress of long steps, without flooding the event log)."""
    last = [0.0]

    def throttled(value) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            report(value)

    return throttled


def with_reference(cfg: RunConfig, emit: Emitter, session: training.Session, pairs: pair_data.Pairs,
                   held: pair_data.Pairs, pad_id: int, steps: int) -> tuple[pair_data.Pairs, pair_data.Pairs]:
    """The training and held-out pairs with the starting model's log-probabilities of each side (DPO's reference),
    worked out with the session's model before it trains (or resumes), for the training pairs its `steps` steps
    train on, and kept in the run's folder (reference.safetensors) so a resume of the same pairs reads them."""
    seen = training.examples_seen(cfg, len(pairs), steps)
    total, t0 = len(seen) + len(held), time.time()
    unit = "rated answer" if pairs.ratings is not None else "pair"
    said = _every(2.0, lambda n: emit("status", text=f"The starting model's log-probabilities (the reference): "
                                                     f"{n:,} of {counted(total, unit)}", fraction=n / total))

    def work_out(some: pair_data.Pairs, before: int):
        return pair_data.reference_logps(session.model, some, pad_id, cfg.micro_batch, session.device,
                                         lambda n: said(before + n))
    pairs, held, fresh = pair_data.with_reference(Path(cfg.run_dir) / "reference.safetensors", pairs, held,
                                                  cfg.seq_len, work_out, seen)
    if fresh:
        emit("status", text=f"Worked out the starting model's log-probabilities of {counted(total, unit)} in "
                            f"{duration(time.time() - t0)}: the reference {objectives.get(cfg.objective).LABEL} "
                            "compares against")
    return pairs, held


def train(cfg: RunConfig, resume: bool, emit: Emitter, control: run_control.Control, db: history.History) -> int:
    import torch
    from transformers import AutoTokenizer

    run_dir = Path(cfg.run_dir)
    strategy = strategies.get(cfg.strategy)  # a strategy that is not built fails here, before any loading
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device, _, precision = training.pick_device(cfg)
    if not strategy.uses_bitsandbytes(strategy.options(cfg.strategy_options), device.type):
        runtime_env.leave_out("bitsandbytes")  # (before peft is imported: a second and a half saved)
    memory_watch.apply_cap(cfg.memory_cap_bytes, device)
    lean_heap = memory_watch.lean_heap_if_short(cfg.plan, device, cfg.memory_cap_bytes)  # before loading
    db.update_run(cfg.run_id, status=history.RUNNING, pid=os.getpid(), started_at=time.time(), outcome=None,
                  ended_at=None)

    if lean_heap:
        emit("status", text=lean_heap)
    emit("status", text="Reading the dataset")
    data = data_mod.load(cfg.data_path, on_bad=cfg.bad_rows, mapping=cfg.data_mapping or None,
                         on_progress=_every(2.0, lambda f: emit("status", text="Reading the dataset", fraction=f)),
                         good_above=cfg.good_above)
    if data.problem_count:
        emit("status", text=f"Left out {counted(data.problem_count, 'bad row')}, first: {data.problems[0]}")
    if data.scores:  # scored answers: the line they are rated by, the validation set's too
        emit("status", text=f"Rated by their {scores.describe(data.scores)}")
    if cfg.eval_data:  # a separate validation set: every training row trains
        held = data_mod.load(cfg.eval_data, on_bad=cfg.bad_rows, mapping=cfg.data_mapping or None,
                             good_above=(data.scores or {}).get("good_above", cfg.good_above))
        train_rows, (eval_rows, split_note) = data.examples, split.separate(held.examples, cfg.eval_data, cfg.seed)
    else:
        train_rows, eval_rows, split_note = data.split(cfg.eval_fraction, cfg.seed)
    emit("status", text=split_note[:1].upper() + split_note[1:])
    objective = objectives.get(cfg.objective)
    train_rows, eval_rows, note = pair_data.rows_for(objective, data.format, train_rows, eval_rows)
    if note:  # supervised on rated answers: the good ones alone; KTO on pairs: each pair split in two
        emit("status", text=note)
    emit("status", text=f"Loading the model ({precision} on {device.type}, {cfg.strategy})")
    tok = AutoTokenizer.from_pretrained(cfg.model_path)
    pad_id = tokenize.pad_id_of(tok)
    for said in data.template_notes(tok):  # how the calls and the reasoning are written for this model
        emit("status", text=said)
    # Tokenized rows are cached by content (data, tokenizer, template, length): a resume or a re-run skips this.
    cache = Path(cfg.db_path).parent / "cache" / "tokens"
    tokenizing = _every(2.0, lambda n: emit("status", text=f"Tokenizing: {n:,} of {len(train_rows):,} rows",
                                            fraction=n / max(1, len(train_rows))))
    train_set = token_cache.encode_all_cached(train_rows, tok, cfg.seq_len, cfg.train_on, cache, data.digest,
                                              on_progress=tokenizing)
    eval_set = tokenize.encode_all(eval_rows, tok, cfg.seq_len, cfg.train_on)
    eval_tokens = sum(len(e.input_ids) for e in eval_set)  # (one side of each pair: a check's cost, roughly)
    if not len(train_set):
        raise KnownError(f"{cfg.data_path}: no example has a trained token within {cfg.seq_len} tokens; "
                         "raise the sequence length.")
    pairs = None
    if objective.PAIRS:
        pairs, held = pair_data.for_run(cfg, objective, train_rows, train_set, eval_rows, eval_set, tok, cache,
                                         data.digest)
    session = training.Session(cfg)
    loading_peak = memory_watch.start_training_peak(device)  # the calibration measures training alone
    _active_kernels[:] = [op for op, p in session.kernels.items() if p.active]
    items, collate = train_set, tokenize.collate
    if pairs is not None:
        items, collate = pairs, pair_data.collate
        emit("status", text=f"Preference tuning ({objective.LABEL}) on "
                            f"{counted(len(pairs), 'rated answer' if objective.RATED else 'pair')}: "
                            f"{objective.SUMMARY}")
    elif cfg.packing:
        if why := packing.why_not(session.model):
            emit("status", text=f"Packing is off: {why}; rows are padded instead")
        else:
            items, collate = packing.pack(train_set, cfg.seq_len), packing.collate
            emit("status", text=f"Packed {counted(len(train_set), 'row')} into {counted(len(items), 'sequence')} "
                                f"of up to {cfg.seq_len} tokens (rows stay apart)")
    per_epoch = len(items) / (cfg.micro_batch * cfg.grad_accum)  # steps per pass over the data
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    planned = total  # what the plan asked; `total` is less once the run is cut to its time limit
    session.schedule(total)
    last = checkpoint.latest(run_dir) if resume else None
    if cfg.continues and last is None:  # a run that goes on from another's weights says so once, at its start
        went_on = f"Starting from {results.continued_text(cfg.continues)}"
        db.add_event(cfg.run_id, "continues", went_on)
        emit("status", text=went_on)
    if pairs is not None and objective.REFERENCE:  # from the starting model: before a resume loads its weights
        items, held = with_reference(cfg, emit, session, pairs, held, pad_id, total)
    if pairs is not None:
        eval_set = held if len(held) else eval_set  # (a separate validation set of other rows: their loss alone)

    best, state = float("inf"), None
    if last is not None:
        state = session.resume(last)
        best = state.get("best_loss", best)
        total = state.get("total_steps", total) if state.get("time_cut") else total  # the cut, as the schedule's
        emit("status", text=f"Resumed from the checkpoint at step {session.step_index}"
             + ("; the re-plan changed which weights train, so the optimizer starts afresh from its weights"
                if state.get("optimizer_reset") else ""))
    watch = validation_watch.Watch.start(cfg, state, session.step_index)
    db.update_run(cfg.run_id, total_steps=total)
    eval_every = checks_every(cfg, total)  # a validation curve, not just an end figure
    emit("start", total_steps=total, start_step=session.step_index, train_examples=len(train_set),
         objective=cfg.objective, eval_examples=len(eval_set), trainable_params=session.trainable_count,
         device=device.type, precision=precision, strategy=cfg.strategy, options=settings.to_dict(session.options),
         sequences=len(items), packed=collate is packing.collate,
         tokens_per_epoch=train_set.total_tokens() + (pairs.rejected.total_tokens() if pairs is not None else 0),
         kernels=list(_active_kernels),
         placement=session.placement, gpu_index=cfg.plan.get("gpu_index"))
    where = "; ".join(f"{part} on {place}" for part, place in session.placement.items())
    if where:  # kept in the history with the run, and shown in the log
        db.add_event(cfg.run_id, "placement", where)
        emit("status", text=f"Where it lives: {where}")
    off: dict[str, list[str]] = {}
    for op, p in session.kernels.items():
        if not p.active:
            off.setdefault(p.reason, []).append(op)
    for reason, ops in off.items():
        emit("status", text=f"Kernels off ({', '.join(ops)}): {reason}")

    def save_checkpoint() -> None:
        path = session.save_checkpoint(run_dir, {"best_loss": best, "total_steps": total, "time_cut": total < planned,
                                                 **watch.state()})
        db.add_checkpoint(cfg.run_id, session.step_index, str(path), keep=cfg.keep_checkpoints)
        emit("checkpoint", step=session.step_index, path=str(path))

    started, first_step, loss_value, stepping = time.time(), session.step_index, None, 0.0
    others = cpu_share.OtherLoad()  # the CPU other programs take over the steps the pace counts
    trained_before = db.run(cfg.run_id).get("trained_s") or 0.0  # earlier sessions of a resumed run
    while session.step_index < total:
        if control.paused and not control.stop:
            started += hold(cfg, db, emit, session, tok, control)
        if control.stop:
            save_checkpoint()
            return finish(cfg, db, emit, session, history.STOPPED, f"stopped by you at step {session.step_index}",
                          loss_value, best, EXIT_STOPPED, None)
        t0 = time.time()
        batches = [collate([items[i] for i in idx], pad_id)
                   for idx in training.batches_for_step(session.step_index, cfg, len(items))]
        loss_value, tokens, note = session.step(batches)
        step = session.step_index
        if note:
            emit("status", text=note)
        best = min(best, loss_value)
        elapsed = time.time() - started
        dt = time.time() - t0
        step_s = elapsed / (step - first_step)
        left = cfg.time_limit_s - trained_before - elapsed if cfg.time_limit_s else float("inf")
        eta = min(step_s * (total - step), max(0.0, left))
        mem = memory_watch.current_bytes(device)
        lr = session.scheduler.get_last_lr()[0]
        db.add_metric(cfg.run_id, step, "train", loss_value, lr=lr, tokens_per_s=tokens / dt, elapsed_s=elapsed,
                      memory_bytes=mem, prefers=session.prefers)
        db.update_run(cfg.run_id, steps_done=step, final_loss=loss_value, best_loss=best,
                      trained_s=trained_before + elapsed)
        emit("step", step=step, total_steps=total, loss=round(loss_value, 5), lr=lr, tokens_per_s=round(tokens / dt, 1),
             elapsed_s=round(elapsed, 2), eta_s=round(eta, 1), memory_bytes=mem,
             epoch=round(step / per_epoch, 3), **({"io": io} if (io := session.io_stats()) else {}),
             **({"prefers": round(session.prefers, 3)} if session.prefers is not None else {}))
        if step == first_step + 1:
            others.restart()
        if step > first_step + 1:
            stepping += dt  # the pace of steps alone: no validation checks, and not the session's first step,
            # which pays for first allocations
        pace = stepping / (step - first_step - 1) if step > first_step + 1 else step_s
        if step - first_step == cfg.calibrate_after and cfg.plan.get("memory"):
            measured = memory_watch.calibration(cfg.plan, device, cfg.run_id, pace, loading_peak, lean_heap=bool(
                lean_heap), others=others.share() if step > first_step + 1 else None)
            db.set_calibration(cfg.run_id, measured)
            emit("calibration", **measured)
        if step - first_step == PACE_STEPS and step < total and left < float("inf"):
            # No check measured yet: about half a step's time for its tokens (a forward pass, no backward).
            check_s = pace * eval_tokens * (2 if pairs is not None else 1) / max(1, tokens) / 2
            total, eval_every = cut_to_limit(cfg, db, emit, session, total, plan_length.steps_within(
                left, pace, check_s, cfg.eval_every or None))
        checked = None
        if step % eval_every == 0 and step < total:
            t_check = time.time()
            checked = run_eval(cfg, db, emit, session, eval_set, pad_id, step, watch)
            if left < float("inf") and step - first_step >= PACE_STEPS:  # again, with a check measured
                check_s = time.time() - t_check
                total, eval_every = cut_to_limit(cfg, db, emit, session, total, plan_length.steps_within(
                    left - check_s, pace, check_s, eval_every))
            if watch.tired:
                save_checkpoint()
                return finish(cfg, db, emit, session, history.DONE, watch.why_stopped(step), loss_value, best,
                              EXIT_DONE, checked)
        if checked is not None and cfg.time_limit_s:  # the check took time too
            left = cfg.time_limit_s - trained_before - (time.time() - started)
        if step_s > left and step < total:  # the next step would end past the person's time limit
            if checked is None:
                checked = run_eval(cfg, db, emit, session, eval_set, pad_id, step, watch, last=True)
            save_checkpoint()
            return finish(cfg, db, emit, session, history.DONE, f"stopped at its time limit "
                          f"({duration(cfg.time_limit_s)}) after {step} of {counted(total, 'step')}", loss_value,
                          best, EXIT_DONE, checked)
        if step % cfg.checkpoint_every == 0 and step < total:
            save_checkpoint()
    checked = run_eval(cfg, db, emit, session, eval_set, pad_id, session.step_index, watch, last=True)
    save_checkpoint()
    ended = f"finished {counted(session.step_index, 'step')}" + (f", cut from {planned:,} to end within its time "
                                                                 f"limit ({duration(cfg.time_limit_s)})"
                                                                 if total < planned else "")
    return finish(cfg, db, emit, session, history.DONE, ended, loss_value, best, EXIT_DONE, checked)


def hold(cfg, db, emit, session, tok, control: run_control.Control) -> float:
    """Paused between steps: the model stays loaded and answers prompts as it is now (each after the turns of the
    conversation it came with), until the person continues or stops. Returns the seconds spent, which the ETA
    leaves out."""
    import torch

    from core.conversation import Conversation

    t0 = time.time()
    db.add_event(cfg.run_id, "paused", f"paused at step {session.step_index}")
    emit("paused", step=session.step_index, tools=cfg.tools or None,  # the tools it is asked with, if any
         text=f"Paused at step {session.step_index}; the model stays loaded, so you can try it")
    while control.paused and not control.stop:
        for ask in control.take_asks():
            rng = torch.get_rng_state()  # answering must not change the run's random stream (exact resume)
            session.model.eval()
            try:
                # The turns asked before at this pause, and the tools the run's data offered (as Try it offers them).
                # A prompt of None goes on from the tool results the conversation ends with.
                talk = Conversation(turns=run_control.history_of(ask), tools=cfg.tools or None)
                seen = len(talk.turns)
                answer = talk.ask(session.model, tok, ask["prompt"],
                                  int(ask.get("max_new_tokens") or inference.room(cfg.thinks)))
                emit("answer", id=ask.get("id"), prompt=ask["prompt"], text=answer, seen_turns=seen,
                     tools=[t["function"]["name"] for t in cfg.tools])
            except Exception as e:  # noqa: BLE001  a prompt that fails must not end the run
                traceback.print_exc()
                emit("answer", id=ask.get("id"), prompt=ask["prompt"], error=f"{type(e).__name__}: {e}")
            finally:
                session.model.train()
                torch.set_rng_state(rng)
        time.sleep(0.2)
    waited = time.time() - t0
    if not control.stop:
        db.add_event(cfg.run_id, "resumed", f"continued at step {session.step_index} after {waited:.0f} s")
        emit("resumed", step=session.step_index, text=f"Continuing from step {session.step_index}")
    return waited


def cut_to_limit(cfg, db, emit, session, total: int, more: int) -> tuple[int, int]:
    """(total steps, steps between validation checks) once the run is cut to end `more` steps from now, when that
    is sooner than `total` (unchanged otherwise): said, recorded, and the learning-rate schedule ends there too."""
    step = session.step_index
    if step + more >= total - (total - step) // 50:  # fits, or a cut too small to be worth a word
        return total, checks_every(cfg, total)
    cut = (f"At its pace, {counted(total, 'step')} would pass the time limit ({duration(cfg.time_limit_s)}): the run "
           f"ends at step {step + more:,} instead, its learning rate decaying to its end there")
    session.cut_schedule(step + more)
    db.update_run(cfg.run_id, total_steps=step + more)
    db.add_event(cfg.run_id, "time_cut", cut)
    emit("status", text=cut)
    return step + more, checks_every(cfg, step + more)


def checks_every(cfg, total: int) -> int:
    """Steps between validation checks: the person's, or about plan_length.CHECKS in a run of `total` steps."""
    return cfg.eval_every or max(1, total // plan_length.CHECKS)


def run_eval(cfg, db, emit, session, eval_set, pad_id, step, watch, last: bool = False) -> float | None:
    """The validation loss now (None without validation rows), recorded, shown and counted by `watch`."""
    value = session.evaluate(eval_set, pad_id)
    if value is not None:
        db.add_metric(cfg.run_id, step, "eval", value, prefers=session.eval_prefers)
        db.update_run(cfg.run_id, eval_loss=value)
        lowest = watch.check(session, step, value, last=last)
        emit("eval", step=step, loss=round(value, 5), lowest=lowest,
             **({"prefers": round(session.eval_prefers, 3)} if session.eval_prefers is not None else {}))
    return value


def finish(cfg, db, emit, session, status, outcome, loss, best, code, checked: float | None) -> int:
    """Write the result (adapter or model folder) where chat and export find it, settle the kept best weights
    against it (`checked`: the validation loss at this step, None when not measured), then record the end."""
    from core import atomic

    result = results.last_folder(cfg.run_dir)
    with atomic.folder(result, replace=True) as tmp:
        session.save_result(tmp)
    kept = validation_watch.summary(results.settle(cfg.run_dir, session.step_index, checked))
    if kept:
        db.add_event(cfg.run_id, "best", kept)
        emit("status", text=kept)
    session.close()  # unhooks a host-side optimizer and deletes its scratch spill file
    db.update_run(cfg.run_id, status=status, outcome=outcome, ended_at=time.time(), final_loss=loss,
                  best_loss=None if best == float("inf") else best)
    db.add_event(cfg.run_id, status, outcome)
    emit("done", status=status, text=outcome, final_loss=loss, result=str(result))
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return EXIT_KNOWN
    cfg = run_config.load(argv[0])
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    emit = Emitter(run_dir)
    control = run_control.Control(run_dir, _stop_signalled)
    db = history.History(cfg.db_path)
    try:
        return train(cfg, "--resume" in argv[1:], emit, control, db)
    except KnownError as e:
        return fail(db, emit, cfg, "known", str(e), EXIT_KNOWN)
    except Exception as e:
        if memory_watch.is_out_of_memory(e):
            del e  # drop the traceback's frames, and with them the step's tensors
            return out_of_memory(db, emit, cfg, argv[0])
        traceback.print_exc()
        failed = failures.culprits(e, _active_kernels)
        if failed:
            why = failures.describe(e)
            del e
            return kernels_failed(db, emit, cfg, argv[0], failed, why)
        return fail(db, emit, cfg, "bug", f"crashed ({type(e).__name__}: {e}); see the log", EXIT_BUG)
    finally:
        db.close()


def out_of_memory(db, emit, cfg, config_path: str) -> int:
    """Say so, re-plan and start again from the last checkpoint; or, with nothing left to try, fail."""
    device, _, _ = training.pick_device(cfg)  # the same choice train() made, so it cannot fail here
    step = db.run(cfg.run_id).get("steps_done") or 0
    text = f"ran out of {'GPU ' if device.type == 'cuda' else ''}memory at step {step}"
    return go_on(db, emit, cfg, config_path, "oom", text, EXIT_OOM, step, {"peak": memory_watch.peak_bytes(device)})


def kernels_failed(db, emit, cfg, config_path: str, failed: list[str], why: str) -> int:
    """Our kernels `failed` (`why`: the error in a line; its traceback is in the log): say so, re-plan without them
    and start again from the last checkpoint; or, when no plan is left, fail."""
    step = db.run(cfg.run_id).get("steps_done") or 0
    text = f"{failures.named(failed)} failed at step {step} ({why})"
    return go_on(db, emit, cfg, config_path, "kernel", text, EXIT_BUG, step, {"kernels": failed}, failed, why)


def go_on(db, emit, cfg, config_path: str, kind: str, text: str, code: int, step: int, details: dict,
          failed_kernels: list[str] | None = None, why: str = "") -> int:
    """After a failure of `kind` said in `text`: re-plan (core.replanner.replan_run) and start again from the last
    checkpoint; with nothing left to try, or a stop asked for, end the run with `code`."""
    if not run_control.Control(Path(cfg.run_dir), _stop_signalled).stop:
        try:
            reason = replanner.replan_run(cfg, Path(config_path), db, step, failed_kernels, why)
        except KnownError as e:
            said = str(e)
            text = f"{text}; {said[:1].lower()}{said[1:]}"
        else:
            emit("error", kind=kind, text=text, step=step, **details)
            emit("replan", text=reason, after_step=step, cause=kind)
            db.close()
            restart(config_path)
    return fail(db, emit, cfg, kind, text, code, step=step, **details)


def restart(config_path: str) -> None:
    """This trainer again, resuming: in place on POSIX (same pid, stdout and stderr, so the app's pipe and a
    reattached window's pid watch carry on); elsewhere as a child whose exit code becomes ours."""
    args = runtime_env.module_command("core.trainer", config_path, "--resume")
    _events.flush()
    os.dup2(_events.fileno(), 1)  # the events pipe is stdout again for the new image (we pointed 1 at the log)
    sys.stderr.flush()
    if os.name == "posix":  # a stop signalled while the new image starts waits, blocked, for its handlers
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        os.execv(sys.executable, args)
    import subprocess

    sys.exit(subprocess.call(args))


def fail(db, emit, cfg, kind, text, code, **details) -> int:
    db.update_run(cfg.run_id, status=history.FAILED, outcome=text, ended_at=time.time())
    db.add_event(cfg.run_id, "failed", text)
    emit("error", kind=kind, text=text, **details)
    return code


runtime_env.exit_now(main(sys.argv[1:]))  # no interpreter teardown: a second saved
