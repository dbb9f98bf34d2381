"""`tuneforge models`: the models on this machine, as the app's Model page lists them (app/model_catalog.py), for
the command line: what to give `--model`, where each comes from, its shape and size, and the planner's answer to
whether it fits here (or on `--hardware`), with why one cannot be used."""

from __future__ import annotations

from app import model_catalog
from app.cli_verbs import _progress, out
from core.plan_text import size_text
from core.words import short_count


def cmd_models(a) -> int:
    found = model_catalog.list_models(progress=_progress(a), hardware_file=a.hardware)
    if a.json:
        out([{"name": c.model.name, "label": c.model.label, "source": c.model.source, "path": c.model.path,
              "size_bytes": c.model.size_bytes, "architecture": c.model.architecture, "params": c.model.params,
              "context": c.model.context, "fit": c.fit, "fit_level": c.level, "problem": c.model.problem}
             for c in found])
        return 0
    for c in found:
        m = c.model
        shape = ", ".join(filter(None, (size_text(m.size_bytes), short_count(m.params) and
                                        f"{short_count(m.params)} parameters", m.architecture,
                                        m.context and f"context {m.context:,}")))
        print(f"{m.name}" + (f"  ({m.label})" if m.label not in m.name else ""))
        print(f"    {m.source}{': ' + shape if shape else ''}")
        print(f"    {c.fit}")
    print(f"Each fit is the planner's answer for a typical dataset of {model_catalog.ROWS} rows of "
          f"{model_catalog.ROW_TOKENS} tokens, with the time per 1,000 such rows; `plan --model NAME --data FILE` "
          "answers for your own.")
    return 0
