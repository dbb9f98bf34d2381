"""Tokenizing short chat rows: the per-row reference (`encode`) against the batched path (`encode_many`).

The rows are ours, built from a fixed seed: one or two exchanges of short questions and answers, a
system prompt on some, a little accented and non-Latin text. Both methods run in the same process on
the same rows with the model's own tokenizer and chat template, after a short warm-up of each, and the
script checks that they give the same ids, labels and truncation flags for every row (the JSON
records it, and the exit status is non-zero when they differ). The goal from the issue is 20,000
rows/s for the batched path on a 2-core machine with the default model's tokenizer.

The batched path is timed three times and the median kept (the per-row path, much slower, once); the
CPU time of the process is recorded beside each wall time, as it depends far less on the load. The
questions repeat across rows (a hundred or so distinct ones) and the batched path encodes each
distinct piece of text once, so the same rows are also timed with every question made unique
("unique_questions"), which shows what that repetition is worth. The JSON says which shortcuts the
batched path took and why (no per-row render, tokenizing by pieces).

    python benchmarks/tokenize_speed.py                       # 20,000 rows, the default model
    python benchmarks/tokenize_speed.py --rows 500 --out /tmp/t.json --model path/to/model

Without --out the result goes to benchmarks/results/tokenize_speed-<cpu>.json. Timings are wall
clock, so other work on the machine lowers them: the JSON holds the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import runtime_env  # noqa: E402

runtime_env.prepare()

from app import paths  # noqa: E402
from core import atomic, hardware, model_source  # noqa: E402
from core.data import template_check  # noqa: E402
from core.data.dataset import Example  # noqa: E402
from core.data.piece_tokenize import PieceTokenizer  # noqa: E402
from core.data.tokenize import encode, encode_many  # noqa: E402

GOAL_ROWS_PER_S = 20_000
WARM_UP = 200

_SUBJECTS = ["the tide", "a parrot", "my ship", "the crew", "gold", "the moon", "a storm", "the map", "rum",
             "the harbour", "a kraken", "the café", "Zürich", "東京", "the captain's log"]
_ASKS = ["What is {s}?", "Where can I find {s}?", "Why does {s} matter?", "Tell me about {s}.",
         "How old is {s}?", "Is {s} dangerous?", "Can you describe {s} in one line?"]
_ANSWERS = ["Arr, {s} be {a}.", "{S} is {a}, matey.", "Aye, {s}: {a}.", "Nobody knows, but {s} seems {a}.",
            "{S}? {a}, and that's the truth of it."]
_ADJECTIVES = ["salty", "grand", "older than the sea", "worth a fortune", "naïve", "très bien", "fearsome",
               "quiet at dawn", "close to port", "lost"]
_SYSTEMS = ["You are a pirate.", "Answer briefly.", "Speak like a sailor from 1720."]


def chat_rows(n: int, seed: int = 0) -> list[Example]:
    """n short chat rows, different from each other, the same for a given seed."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        messages = [{"role": "system", "content": rng.choice(_SYSTEMS)}] if rng.random() < 0.3 else []
        for _ in range(rng.choice((1, 1, 2))):
            s, a = rng.choice(_SUBJECTS), rng.choice(_ADJECTIVES)
            answer = rng.choice(_ANSWERS).format(s=s, S=s[:1].upper() + s[1:], a=a)
            messages += [{"role": "user", "content": rng.choice(_ASKS).format(s=s)},
                         {"role": "assistant", "content": f"{answer} ({i})"}]
        rows.append(Example(messages=messages, source=f"bench:{i + 1}"))
    return rows


def unique_questions(rows: list[Example]) -> list[Example]:
    """The same rows with a number after every question, so no two questions are alike."""
    return [Example(messages=[dict(m, content=f"{m['content']} (#{i}.{j})") if m["role"] == "user" else m
                              for j, m in enumerate(e.messages)], source=e.source) for i, e in enumerate(rows)]


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of all this process's threads, result): the CPU time hardly moves with
    the machine's load, the wall time does."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def median_of(fn, times: int = 3) -> tuple[float, float, list[float], object]:
    runs = sorted((timed(fn) for _ in range(times)), key=lambda run: run[0])
    wall, cpu, result = runs[len(runs) // 2]
    return wall, cpu, [round(run[0], 3) for run in runs], result


def mismatched(old: list, new: list) -> list[str]:
    return [o.source for o, n in zip(old, new) if o != n] + (["(row count)"] if len(old) != len(new) else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="How many chat rows to tokenize.")
    parser.add_argument("--model", default="default", help="'default', a model folder or a .gguf file.")
    parser.add_argument("--seq-len", type=int, default=512, help="Sequence length rows are cut at.")
    parser.add_argument("--train-on", default="assistant", choices=["assistant", "all"], help="What is trained.")
    parser.add_argument("--out", type=Path,
                        help="JSON to write (default benchmarks/results/tokenize_speed-<cpu>.json).")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1.")

    from transformers import AutoTokenizer
    import tokenizers
    import transformers

    ref = model_source.resolve(args.model, paths.models_dir())
    tok = AutoTokenizer.from_pretrained(str(ref.path))
    rows = chat_rows(args.rows)
    fresh = unique_questions(rows)
    load_before = os.getloadavg()
    per_row = lambda data: lambda: [encode(e, tok, args.seq_len, args.train_on) for e in data]  # noqa: E731
    batched = lambda data: lambda: encode_many(data, tok, args.seq_len, args.train_on)  # noqa: E731
    encode_many(rows[:WARM_UP], tok, args.seq_len, args.train_on)
    [encode(e, tok, args.seq_len, args.train_on) for e in rows[:WARM_UP]]
    old_s, old_cpu, old = timed(per_row(rows))
    new_s, new_cpu, new_runs, new = median_of(batched(rows))
    mismatches = mismatched(old, new)
    fresh_s, fresh_cpu, fresh_runs, fresh_new = median_of(batched(fresh))
    fresh_mismatches = mismatched(timed(per_row(fresh))[2], fresh_new)
    unproven = template_check.check(tok.get_chat_template())
    pieces, pieces_reason = PieceTokenizer.for_tokenizer(tok)

    cpu = hardware._cpu_name() or platform.processor() or platform.machine()
    result = {
        "benchmark": "tokenize_speed", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": cpu, "cores_logical": os.cpu_count(), "platform": platform.platform(),
                   "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "versions": {"python": platform.python_version(), "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "model": ref.label, "rows": len(rows), "seq_len": args.seq_len, "train_on": args.train_on,
        "tokens_per_row_mean": round(sum(len(e.input_ids) for e in new) / len(new), 1),
        "per_row": {"seconds": round(old_s, 3), "rows_per_s": round(len(rows) / old_s), "cpu_s": round(old_cpu, 3)},
        "batched": {"seconds": round(new_s, 3), "rows_per_s": round(len(rows) / new_s), "cpu_s": round(new_cpu, 3),
                    "runs_s": new_runs},
        "ratio": round(old_s / new_s, 2),
        "goal_rows_per_s": GOAL_ROWS_PER_S, "meets_goal": len(rows) / new_s >= GOAL_ROWS_PER_S,
        "agree": not mismatches and not fresh_mismatches, "mismatches": (mismatches + fresh_mismatches)[:20],
        "unique_questions": {"seconds": round(fresh_s, 3), "rows_per_s": round(len(rows) / fresh_s),
                             "cpu_s": round(fresh_cpu, 3), "runs_s": fresh_runs, "agree": not fresh_mismatches},
        "shortcuts": {"per_row_render_skipped": unproven is None,
                      "render": unproven or "the template is proven to copy contents verbatim",
                      "tokenized_by_pieces": pieces is not None, "tokenize": pieces_reason},
    }
    out = args.out or REPO / "benchmarks" / "results" / f"tokenize_speed-{_slug(cpu)}.json"
    atomic.write_json(out, result)
    print(f"{len(rows)} chat rows, {result['tokens_per_row_mean']} tokens each on average, {ref.label}, {cpu}")
    print(f"  per row (encode):      {result['per_row']['rows_per_s']:>8,} rows/s")
    print(f"  batched (encode_many): {result['batched']['rows_per_s']:>8,} rows/s  ({result['ratio']}× faster; "
          f"goal {GOAL_ROWS_PER_S:,}: {'met' if result['meets_goal'] else 'not met'})")
    print(f"  batched, unique questions: {result['unique_questions']['rows_per_s']:>6,} rows/s")
    print(f"  the two agree on every row: {'yes' if result['agree'] else 'NO: ' + ', '.join(result['mismatches'][:5])}")
    print(f"Wrote {out}")
    return 0 if result["agree"] else 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cpu"


if __name__ == "__main__":
    sys.exit(main())
