"""`tuneforge show RUN`: one run as the History page's detail has it, for the command line: what it is (status,
model, data, where it lives), how it trained and what it measured (as its model card says them: core/model_card.py),
and where its exports went. `runs` lists; `plans --run` tells each plan; this is the rest."""

from __future__ import annotations

import dataclasses

from app import operations as ops
from app.cli_verbs import out
from core import model_card
from core.plan_text import size_text
from core.words import when


def cmd_show(a) -> int:
    run = ops.run_weights(a.run)
    with ops.open_history() as db:
        story = model_card.gather(db, run)
        exports, plans = db.exports(run["id"]), db.plans(run["id"])
        project = db.db["projects"].get(run["project_id"])["name"] if run.get("project_id") else "default"
    if a.json:
        out({"run": {k: v for k, v in run.items() if k not in ("config", "hardware", "plan", "picked")}
             | {"project": project},
             "weights": {"which": run["picked"].which, "step": run["picked"].step, "why": run["picked"].note},
             **dataclasses.asdict(story), "exports": exports, "plans": len(plans)})
        return 0
    name = f" “{run['name']}”" if run.get("name") else ""
    print(f"Run {run['id']}{name} in project {project}: {run['status']}"
          + (f" ({run['outcome']})" if run.get("outcome") and run["outcome"] != run["status"] else ""))
    print(f"Started {when(run.get('started_at') or run.get('created_at'))}; model {run['model']}, "
          f"data {run.get('data_path') or '—'}; its folder {run.get('run_dir') or '—'}")
    print()
    for line in model_card.summary(run, story):
        print(line)
    if exports:
        print("Exports:")
        for e in exports:
            kind = e["format"] + (f" ({e['quant']})" if e.get("quant") else "")
            print(f"  {kind:16} {size_text(e.get('bytes')):>8}  {e['path']}  {when(e.get('created_at'))}")
    if len(plans) > 1:
        print(f"{len(plans)} plans (it was re-planned): tuneforge plans --run {run['id']}")
    return 0
