"""The model card (README.md) every export carries: what the model is, what it was made from, how it was trained
and what the run measured, which file is which, and how to run it.

A folder shared as it is (uploaded to the Hugging Face Hub with `hf upload`, copied to a colleague) then says these
things itself, where peft's own card (which an adapter's folder held) was a template of "[More Information Needed]"
whose `base_model` was a path on this machine. The front matter is the Hub's (`huggingface_hub.ModelCardData`):
`base_model` as a Hub id (never a path: core.lineage), the base's licence carried over, `library_name` peft for an
adapter, transformers for a merged model, and `base_model_relation` so the Hub files the model as a fine-tune (a
GGUF would otherwise read as a quantization of its base). Everything comes from the run's history (`gather`): its
settings, losses, the plan's reasons and the measurements kept with `evaluate`; nothing is made up, and what is not
known is left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from core import atomic, lineage, objectives, results, strategies
from core.plan_text import length_note, size_text
from core.planner import Plan
from core.words import counted, duration

CARD = "README.md"
RELATION = {"adapter": "adapter", "safetensors": "finetune", "gguf": "finetune"}
LIBRARY = {"adapter": "peft", "safetensors": "transformers"}  # a GGUF folder is tagged gguf, with no library
TRAIN_ON = {"assistant": "every assistant turn", "last": "each conversation's last answer",
            "all": "every token, prompts too"}
# what each file of an export is, by the first pattern its name matches (Path.match), for the card's file list
FILES = (("adapter_model.safetensors", "the adapter's weights (PEFT)"),
         ("adapter_config.json", "the adapter's settings: its rank, scale and target layers (PEFT)"),
         ("model*.safetensors", "the model's weights"), ("*.safetensors.index.json", "which file holds each weight"),
         ("config.json", "the model's configuration"), ("generation_config.json", "its default generation settings"),
         ("tokenizer*", "the tokenizer"), ("special_tokens_map.json", "the tokenizer's special tokens"),
         ("chat_template.jinja", "the chat template the run trained with"),
         ("mmproj-*.gguf", "the vision projector: give it to llama.cpp with --mmproj (LM Studio finds it by name)"),
         ("*.lora.gguf", "the fine-tune alone as a LoRA file, for a base GGUF (llama.cpp --lora, Ollama's ADAPTER)"),
         ("*.gguf", "the model for llama.cpp, Ollama and LM Studio"),
         ("Modelfile", "for `ollama create`: the chat template and stop token"),
         ("export.json", "what the export decided and why (a GGUF export's: with the check of its file)"))


@dataclass
class Story:
    """What the history holds of a run beyond its own row (History.run)."""

    train: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    evaluations: list[dict] = field(default_factory=list)  # the reports `evaluate` kept, oldest first
    rows: int | None = None  # the dataset's rows, as read for the run
    data_format: str = ""  # its format (core.data.formats)
    preferred: list[tuple[int, float]] = field(default_factory=list)  # a preference run's (step, share) at its checks


def gather(db, run: dict) -> Story:
    """The run's story from the history `db` (core.history.History)."""
    data = db.db["datasets"].get(run["dataset_id"]) if run.get("dataset_id") else None
    checks = db.metrics(run["id"], "eval")
    return Story([(m["step"], m["loss"]) for m in db.metrics(run["id"], "train")],
                 [(m["step"], m["loss"]) for m in checks],
                 [e["report"] for e in db.evaluations(run["id"])],
                 data["rows"] if data else None, data["format"] if data else "",
                 [(m["step"], m["prefers"]) for m in checks if m.get("prefers") is not None])


def write(folder: Path, name: str, run: dict, fmt: str, story: Story | None = None, report: dict | None = None
          ) -> Path:
    """README.md in `folder`, an export being written (every other file is there already, so the card lists them)
    that will be called `name` (its temporary folder's name is not). `report`: a GGUF export's export.json."""
    return atomic.write_text(Path(folder) / CARD, text(Path(folder), name, run, fmt, story or Story(), report or {}))


def said(folder: Path) -> str:
    """The sentence an export's screen and command line say of its card ('' where it has none)."""
    folder = Path(folder)
    if not (folder / CARD).is_file():
        return ""
    return (f"Model card: {folder / CARD} says what it was made from, how it was trained and how to run it; the "
            f"folder is ready to share as it is (hf upload NAME {folder}).")


def summary(run: dict, story: Story) -> list[str]:
    """The run in lines for a terminal (`tuneforge show`): how it trained, then what it measured."""
    base = lineage.base_model(run.get("model") or "", run["model_path"])
    rows = facts(run, _plan(run), base, lineage.dataset(run.get("data_path", "")), story, markdown=False)
    width = max(len(k) for k, _ in rows)
    return [f"{k:{width}}  {v}" for k, v in rows] + measured(run, story)


def _plan(run: dict) -> Plan | None:
    """The run's plan; None without one, or for a plan an older Tuneforge wrote that lacks a field (its card leaves
    the plan's rows out rather than failing the export)."""
    try:
        return Plan.from_dict(run["plan"]) if run.get("plan") else None
    except (TypeError, ValueError):
        return None


def text(folder: Path, name: str, run: dict, fmt: str, story: Story, report: dict) -> str:
    base = lineage.base_model(run.get("model") or "", run["model_path"])
    data = lineage.dataset(run.get("data_path", ""))
    plan = _plan(run)
    parts = [front(run, fmt, base, data, report), f"# {name}", "", intro(run, fmt, base, data, story), "",
             "## How it was trained", "", *training(run, plan, base, data, story), "",
             "## What the run measured", "", *measured(run, story), "",
             "## Files", "", *files(folder), *(["", report["dtype"]] if report.get("dtype") else []), "",
             "## Use it", "", *use(name, fmt, base, report, _adapter(run)), "",
             f"Written by Tuneforge from the history of run {run['id']}" + (f" ({run['name']})" if run.get("name")
                                                                            else "") + "."]
    return "\n".join(parts) + "\n"


def front(run: dict, fmt: str, base: lineage.Origin, data: lineage.Origin, report: dict) -> str:
    from huggingface_hub import ModelCardData

    objective = run["plan"].get("objective", "sft") if run.get("plan") else "sft"
    tags = ["tuneforge", run["strategy"], objective] + (["gguf"] if fmt == "gguf" else [])
    sees = report.get("projector", {}).get("written") if fmt == "gguf" else _sees(run)
    meta = ModelCardData(base_model=base.repo or None, base_model_relation=RELATION[fmt] if base.repo else None,
                         license=base.license or None, library_name=LIBRARY.get(fmt),
                         pipeline_tag="image-text-to-text" if sees else "text-generation", tags=tags,
                         datasets=[data.repo] if data.repo else None, language=list(base.languages) or None)
    return f"---\n{meta.to_yaml()}\n---\n"


def intro(run: dict, fmt: str, base: lineage.Origin, data: lineage.Origin, story: Story) -> str:
    what = {"adapter": f"A {_method(run)} adapter for", "safetensors": "A fine-tune of",
            "gguf": "A fine-tune, in GGUF for llama.cpp, Ollama and LM Studio, of"}[fmt]
    rows = f" ({counted(story.rows, 'row')})" if story.rows else ""
    licence = (f" The base model's licence ({base.license}) applies to it." if base.license else
               " Check the base model's licence before sharing it: none could be read here.")
    return (f"{what} {_linked(base)}, trained on {_linked(data) or 'its data'}{rows} with Tuneforge "
            f"({_method(run)}{_objective_words(run)}).{licence}")


def training(run: dict, plan: Plan | None, base: lineage.Origin, data: lineage.Origin, story: Story) -> list[str]:
    lines = ["| | |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in facts(run, plan, base, data, story))]
    if plan is not None and plan.reasons:
        lines += ["", "Why these settings (the plan's reasons):", "", *(f"- {r}" for r in plan.reasons)]
    return lines


def facts(run: dict, plan: Plan | None, base: lineage.Origin, data: lineage.Origin, story: Story,
          markdown: bool = True) -> list[tuple[str, str]]:
    """(what, how) of the run's training, for the card's table and (`markdown` False: plain text) `tuneforge show`."""
    cfg = run.get("config") or {}
    name = _linked if markdown else (lambda origin: origin.name)
    quoted = "`{}`" if markdown else "{}"
    rows = [("Base model", name(base) + (f" ({quoted.format(base.repo)})" if base.repo else "")
             + (f"; trained on the weights of {base.weights}" if base.weights else "")),
            ("Data", (name(data) or "—") + (f": {counted(story.rows, 'row')}" if story.rows else "")
             + (f", {story.data_format}" if story.data_format else "")),
            ("Learned", f"{TRAIN_ON.get(cfg.get('train_on', 'assistant'), cfg.get('train_on', ''))}"
             f"{_objective_words(run)}" + ("; to call the tools its rows offer" if cfg.get("tools") else "")
             + ("; to think before it answers" if cfg.get("thinks") else "")),
            ("Method", f"{_method(run)}: {strategies.get(run['strategy'], need_built=False).summary}")]
    if plan is not None:
        rows += [("Settings", ", ".join(f"{k}={v}" for k, v in plan.shown_options.items())
                  + ("; " if plan.shown_options else "") + f"optimizer {plan.optimizer}"),
                 ("Steps", f"{run.get('steps_done') or 0:,} of {plan.total_steps:,}"
                  + (" (a number set by hand)" if plan.max_steps and not plan.time_capped else length_note(plan))
                  + f", each a batch of {counted(plan.effective_batch, 'sequence')} of up to {plan.seq_len} tokens"
                  + (f" ({plan.micro_batch} × {plan.grad_accum} accumulated)" if plan.grad_accum > 1 else "")),
                 ("Learning rate", f"{plan.lr:g}"),
                 ("Device", _device(run, plan))]
    if cfg.get("continues"):  # train --from: this run went on from another's weights
        rows.insert(1, ("Started from", results.continued_text(cfg["continues"])))
    kernels = _start_event(run).get("kernels")
    if kernels:
        rows.append(("Our kernels", ", ".join(kernels)))
    if run.get("trained_s"):
        rows.append(("Time", duration(run["trained_s"])))
    return rows


def measured(run: dict, story: Story) -> list[str]:
    lines = []
    if story.train:
        (s0, l0), (s1, l1) = story.train[0], story.train[-1]
        lines.append(f"- Training loss: {l0:.4f} at step {s0}, {l1:.4f} at step {s1}.")
    if story.validation:
        step, low = min(story.validation, key=lambda m: m[1])
        lines.append(f"- Validation loss (rows kept apart from training): lowest {low:.4f} at step {step}, of "
                     f"{counted(len(story.validation), 'check')}.")
    if story.preferred:  # a preference run: the share of its validation pairs (KTO: answers) it prefers rightly
        at, share = story.preferred[-1]
        what, unit = objectives.share_words((run.get("plan") or {}).get("objective", ""))
        lines.append(f"- {what}: {share:.0%} of the validation {unit}s at step {at}.")
    picked = run.get("picked")
    which, step = (picked.which, picked.step) if picked is not None else ("last", run.get("steps_done"))
    if picked is not None and not Path(picked.path).is_dir():  # (`show` of a run that has not saved a result yet)
        lines.append("- No trained weights yet: let the run finish, or resume it.")
    else:
        lines.append(f"- These weights: {picked.note if picked is not None else 'the weights of the last step'}"
                     f" (step {step}).")
    for e in story.evaluations:
        if e.get("base_loss") is None or e.get("tuned_loss") is None:
            continue
        same = e.get("weights") == which and e.get("step") == step
        ratio = math.exp(e["base_loss"] - e["tuned_loss"])  # as core.evaluation.perplexity_ratio
        lines.append(f"- On {Path(str(e['data'])).name} ({counted(e['rows'], 'row')} it did not train on, "
                     f"{counted(e['tokens'], 'answer token')}): loss {e['base_loss']:.4f} with the base model, "
                     f"{e['tuned_loss']:.4f} tuned, the expected answers {ratio:.2f}× as likely per token"
                     + ("" if same else f" (measured on the weights of step {e.get('step')}, not these)") + ".")
    return lines


def files(folder: Path) -> list[str]:
    lines = ["| File | Size | What it is |", "|---|---|---|"]
    for f in sorted(p for p in folder.iterdir() if p.is_file() and p.name != CARD):
        what = next((words for pattern, words in FILES if Path(f.name).match(pattern)), "")
        lines.append(f"| `{_cell(f.name)}` | {size_text(f.stat().st_size)} | {what} |")
    return lines


def use(here: str, fmt: str, base: lineage.Origin, report: dict, adapter: bool) -> list[str]:
    base_ref = base.repo or f"<the {base.name} model folder>"
    if fmt == "adapter":
        return ["With transformers and peft, on the base model:", "", "```python",
                "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f'base = AutoModelForCausalLM.from_pretrained("{base_ref}")',
                f'model = PeftModel.from_pretrained(base, "{here}")',
                f'tokenizer = AutoTokenizer.from_pretrained("{base_ref}")', "```"]
    if fmt == "safetensors":
        return ["With transformers" + (" (the adapter is merged in: no peft needed)" if adapter else "") + ":", "",
                "```python",
                "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f'model = AutoModelForCausalLM.from_pretrained("{here}")',
                f'tokenizer = AutoTokenizer.from_pretrained("{here}")', "```"]
    gguf = report.get("file", "MODEL.gguf")
    projector = (report.get("projector") or {}).get("file") if (report.get("projector") or {}).get("written") else ""
    lines = ["With llama.cpp, Ollama or LM Studio:", "", "```sh",
             f"llama-server -m {gguf} --jinja" + (f" --mmproj {projector}" if projector else ""),
             "ollama create my-model -f Modelfile && ollama run my-model", "```"]
    lora = report.get("lora") or {}
    if lora.get("written"):
        lines += ["", f"Or the fine-tune alone, on a GGUF of {base.name} you have already:", "", "```sh",
                  f"llama-server -m BASE.gguf --lora {lora['file']} --jinja", "```"]
    check = (report.get("verification") or {}).get("summary")
    if check:
        lines += ["", f"Checked before it was kept. {check}"]
    return lines


def _adapter(run: dict) -> bool:
    return strategies.get(run["strategy"], need_built=False).result == "adapter"


def _sees(run: dict) -> bool:
    """Whether the model (an adapter's base, or a merged model) reads images."""
    try:
        config = json.loads((Path(run["model_path"]) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "vision_config" in config


def _method(run: dict) -> str:
    return {"lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA", "lisa": "LISA", "full": "full fine-tuning",
            "offload": "LoRA (base streamed from RAM)"}.get(run["strategy"], run["strategy"])


def _objective_words(run: dict) -> str:
    name = (run.get("plan") or {}).get("objective", "sft")
    label = objectives.label(name)
    return f", {label} on {'rated answers' if objectives.learns_rated(name) else 'preference pairs'}" if label else ""


def _device(run: dict, plan: Plan) -> str:
    hw = run.get("hardware") or {}
    where = plan.gpu_name or (f"CPU ({hw['cpu_name']})" if hw.get("cpu_name") else plan.device)
    return f"{where}, {plan.precision}"


def _start_event(run: dict) -> dict:
    """The trainer's `start` event (events.jsonl in the run folder): which of our kernels were patched in."""
    try:
        with open(Path(run["run_dir"]) / "events.jsonl", encoding="utf-8") as f:
            starts = [e for e in map(json.loads, f) if e.get("event") == "start"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return starts[-1] if starts else {}


def _linked(origin: lineage.Origin) -> str:
    if not origin.name:
        return ""
    return f"[{origin.name}]({origin.url})" if origin.url else origin.name


def _cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
