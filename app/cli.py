"""The command line: `tuneforge VERB ...` (or `python main.py VERB ...`); no verb opens the window.

This is also the contract scripts and tests use. Known problems print one sentence and exit
non-zero; a bug prints one sentence and where the details were written, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from core import objectives, runtime_env, strategies
from core.data.dataset import SUFFIXES
from core.errors import KnownError
from core.gguf_export import QUANT_NAMES
from core.merge_stream import DTYPES
from core.run_config import TRAIN_ON
from tuneforge_kernels import OPS



class Parser(argparse.ArgumentParser):
    """argparse, but a wrong argument is one sentence, not a usage dump."""

    def error(self, message: str):
        raise KnownError(f"{self.prog}: {message}; see `{self.prog} --help`.")


def build_parser() -> Parser:
    p = Parser(prog="tuneforge", description="Fine-tune a language model on this machine. Without a verb, opens the app.")
    sub = p.add_subparsers(dest="verb", parser_class=Parser)

    s = sub.add_parser("profile", help="Show the hardware found on this machine.")
    s.add_argument("--json", action="store_true", help="Print the profile as JSON (usable with plan --hardware).")
    s.add_argument("--probe-disk", action="store_true",
                   help="Measure the disk speed and the GPU link again instead of the cached figures.")

    def reading(s):  # how the dataset is read, for `data inspect` as for plan and train
        s.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                       help="Read the data with this column mapping instead of detecting it, e.g. "
                            "prompt=question completion=answer (repeat for each field).")
        s.add_argument("--bad-rows", choices=["skip", "stop"], default="skip",
                       help="skip: leave rows with problems out (listed); stop: refuse the data at the first one.")
        s.add_argument("--good-above", type=float, metavar="SCORE",
                       help="Scored answers (a 'score' column): those scored above SCORE are rated good, the rest "
                            "bad. Default: the middle of the data's scores (for a run's evaluation: the run's line).")

    def weights(s):  # which of a run's kept weights answer (core/results.py)
        s.add_argument("--weights", choices=["auto", "last", "best"], default="auto",
                       help="A run's weights: best, those of its lowest validation loss, kept when a later check was "
                            "worse; last, its last step's; auto (the default) takes best when the run kept them.")

    def wishes(s, model_required: bool = True):
        s.add_argument("--model", required=model_required,
                       help="'default', a model folder, a .gguf file, a cached model id or ollama:NAME (a model "
                            "Ollama keeps).")
        s.add_argument("--data", required=True, help=f"Dataset file or folder ({', '.join(SUFFIXES)}).")
        s.add_argument("--strategy", help=f"{', '.join(strategies.REGISTRY)} (default: the planner chooses).")
        s.add_argument("--max-steps", type=int, help="Optimizer steps to run (default: whole epochs).")
        s.add_argument("--epochs", type=float,
                       help="Passes over the data (default: sized to the data, 3 for most sets).")
        s.add_argument("--seq-len", type=int, help="Sequence length in tokens (default: from the data).")
        s.add_argument("--lr", type=float, help="Peak learning rate.")
        s.add_argument("--batch-size", type=int, help="Micro-batch size.")
        s.add_argument("--grad-accum", type=int, help="Micro-batches per optimizer step.")
        s.add_argument("--device", choices=["cpu", "cuda"], help="Force a device (default: the GPU when present).")
        s.add_argument("--gpu", type=int, help="Which GPU to train on (default: the one with the most free memory).")
        s.add_argument("--kernels", default="auto", metavar="auto|none|NAMES",
                       help="Our fused GPU kernels: auto (all of them on CUDA), none, or a comma-separated list of "
                            f"{', '.join(OPS)}.")
        ckpt = s.add_mutually_exclusive_group()
        ckpt.add_argument("--checkpointing", dest="checkpointing", action="store_true", default=None,
                          help="Force gradient checkpointing on (less memory, about a third slower).")
        ckpt.add_argument("--no-checkpointing", dest="checkpointing", action="store_false",
                          help="Force gradient checkpointing off.")
        reading(s)
        s.add_argument("--no-packing", dest="packing", action="store_false",
                       help="Pad every row to itself instead of packing short rows into full sequences.")
        s.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                       help="A setting of the strategy, e.g. r=8 or layers=4 (repeat for more; `tuneforge "
                            "strategies` lists them).")
        s.add_argument("--memory-cap", type=float, metavar="GIB",
                       help="Use at most this many GiB of the training device (GPU memory, or RAM on the CPU).")
        s.add_argument("--stop-early", type=int, metavar="CHECKS",
                       help="End the run when CHECKS validation checks in a row have not beaten the lowest validation "
                            "loss; 0 trains every planned step (default: 3 when the plan sizes the run in epochs and "
                            "holds rows out, else 0). The weights of the lowest are kept either way.")
        s.add_argument("--time-limit", metavar="DURATION",
                       help="Train for at most this long, e.g. 45m, 2h or 1h30m (a bare number is minutes): the plan "
                            "cuts the run to the steps that fit, and the run stops at the limit, keeping what it "
                            "learned (default: no limit).")
        s.add_argument("--objective", choices=["auto", *objectives.NAMES], default="auto",
                       help="What the run learns: " + "; ".join(f"{m.NAME}, {m.SUMMARY}"
                                                               for m in objectives.OBJECTIVES.values())
                            + f" (auto: {objectives.DEFAULT_FOR_PAIRS} when the rows are preference pairs, "
                              f"{objectives.DEFAULT_FOR_RATED} when they are rated answers, else sft).")
        s.add_argument("--train-on", choices=TRAIN_ON, default=None,
                       help="Which tokens a supervised run learns from: assistant, every answer (the default); last, "
                            "each conversation's last answer alone, earlier turns as its prompt; all, every token, "
                            "prompts included. Preference tuning learns from the last answer.")
        s.add_argument("--beta", "--orpo-beta", type=float, metavar="BETA",
                       help="Preference tuning: the objective's strength (default: its paper's). " + "; ".join(
                           f"{m.LABEL}: {m.BETA_HELP}" for m in objectives.OBJECTIVES.values() if m.PAIRS) + ".")
        s.add_argument("--eval-fraction", type=float, default=None,
                       help="Share of rows held out for the validation loss (default: none under 20 rows, a tenth "
                            "under 200, else a twentieth, at most 256).")
        s.add_argument("--eval-data", metavar="FILE|ID",
                       help="Measure the validation loss on this dataset instead (a file, a folder or a cached hub "
                            "id; up to 256 of its rows), so every training row trains (default: a cached hub "
                            "dataset's own validation split when --data names its train split).")
        s.add_argument("--keep-best", action=argparse.BooleanOptionalAction, default=None,
                       help="Keep a copy of the weights of the lowest validation loss beside the last step's "
                            "(default: yes, unless only that copy would not fit the disk).")
        s.add_argument("--json", action="store_true", help="Machine-readable output, one JSON object per line.")

    def going_on(s):  # a run that goes on from an earlier one's weights
        s.add_argument("--from", dest="from_run", metavar="RUN",
                       help="Go on from this run's trained weights (on new data, or for more steps): its model, "
                            "strategy and the settings its weights depend on; --weights says which weights.")
        weights(s)

    s = sub.add_parser("plan", help="Show what would run and why.")
    wishes(s, model_required=False)  # with --from, that run's model
    going_on(s)
    s.add_argument("--hardware", help="Plan for a hardware profile from a JSON file instead of this machine.")

    s = sub.add_parser("train", help="Train in a separate process; ends with the run id.")
    wishes(s, model_required=False)  # a run that goes on from another (--from) takes that one's model
    going_on(s)
    s.add_argument("--project", default="default", help="Project name in the history.")
    s.add_argument("--name", default="", help="A name for the run, shown beside its id and usable wherever a run "
                                              "id is (chat --run NAME); `tuneforge rename` changes it.")
    s.add_argument("--seed", type=int, default=42, help="Random seed (same seed, same run).")
    s.add_argument("--eval-every", type=int, metavar="STEPS",
                   help="Measure the validation loss every STEPS steps (default: about ten times per run).")

    s = sub.add_parser("resume", help="Continue a stopped or interrupted run from its last checkpoint.")
    s.add_argument("--run", required=True, help="Run id (a unique prefix is enough, or 'last').")
    s.add_argument("--json", action="store_true", help="One JSON object per line.")

    s = sub.add_parser("plans", help="Every plan a run has had, with why (a re-plan after running out of memory "
                                     "adds one), and the peak memory it measured.")
    s.add_argument("--run", required=True, help="Run id (a unique prefix is enough, or 'last').")
    s.add_argument("--json", action="store_true", help="Print as JSON.")

    s = sub.add_parser("strategies", help="The training strategies and the settings each one takes.")
    s.add_argument("--json", action="store_true", help="Print as JSON.")

    s = sub.add_parser("models", help="The models on this machine (bundled, converted, Ollama's, LM Studio's, the "
                                      "Hugging Face cache's): what to give --model, and whether each fits.")
    s.add_argument("--hardware", help="Answer for a hardware profile from a JSON file instead of this machine.")
    s.add_argument("--json", action="store_true", help="Print as JSON.")

    s = sub.add_parser("runs", help="List the history of runs.")
    s.add_argument("--project", help="Only this project.")
    s.add_argument("--json", action="store_true", help="Print as JSON.")

    s = sub.add_parser("show", help="One run: its status, how it trained, what it measured, where its exports are.")
    s.add_argument("run", metavar="RUN", help="Run id (or its name, a unique start of the id, or 'last').")
    s.add_argument("--json", action="store_true", help="Print as JSON.")

    s = sub.add_parser("rename", help="Name a run (shown beside its id; usable wherever a run id is).")
    s.add_argument("run", metavar="RUN", help="Run id (or its name, a unique start of the id, or 'last').")
    s.add_argument("name", metavar="NAME", help="The new name; '' takes the name away.")

    s = sub.add_parser("delete", help="Delete runs: their folders (checkpoints, trained results, logs) and their "
                                      "history. Exports stay. Without --yes, says what would go and deletes nothing.")
    s.add_argument("runs", nargs="+", metavar="RUN", help="Run ids (or a unique start of one, or 'last').")
    s.add_argument("--yes", action="store_true", help="Delete them.")
    s.add_argument("--checkpoints", action="store_true",
                   help="Delete only the checkpoints of finished (done) runs: what resuming starts from, never needed "
                        "again once a run is done; their trained weights, history and exports stay.")

    s = sub.add_parser("chat", help="Ask a trained run or a model: one question, or a conversation.")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="Run id whose result answers.")
    g.add_argument("--model", help="A model to answer ('default', a folder, a .gguf file, ollama:NAME).")
    s.add_argument("question", nargs="?", help="What to ask (as --prompt does).")
    s.add_argument("--prompt", help="What to ask. Without it, a conversation: typed at the terminal, or one question "
                                    "per line of standard input; /new starts over.")
    s.add_argument("--system", help="System message.")
    s.add_argument("--tools", metavar="FILE",
                   help="Functions the model may call: a JSON list of them (OpenAI's form, or name/description/"
                        "parameters), or a dataset of JSON lines whose first row has 'tools'; 'none' for none. A "
                        "run is asked with the tools its data offered unless this says otherwise. A call the model "
                        "makes is shown, not run: give its result with --result, or, in a conversation, when "
                        "asked for it.")
    s.add_argument("--result", action="append", default=[], metavar="TEXT",
                   help="With --prompt: what the tool returns to the model's call (once a call: the next result "
                        "for the next call); the model answers again after each call's result.")
    s.add_argument("--max-new-tokens", type=int,
                   help="Longest reply in tokens: 128 by default, 512 for a run whose data's answers carried their "
                        "reasoning (it thinks before it answers).")
    s.add_argument("--temperature", type=float, default=0.0,
                   help="0 (the default): the most likely answer, the same every time; above 0, sampled, more varied "
                        "the higher (0.7 is a usual choice).")
    weights(s)

    s = sub.add_parser("evaluate", help="How a run does on a file of examples it did not train on: the loss of their "
                                        "answers with the base and the tuned model, and both models' answers.")
    s.add_argument("--run", required=True, help="Run id (or 'last').")
    s.add_argument("--data", help="A dataset file or folder, read as for training (held-out rows). Without it "
                                  "(or --split), what was measured of the run before.")
    s.add_argument("--split", metavar="SPLIT",
                   help="Measure on this split of the run's own dataset, e.g. test: one the run did not train on, "
                        "of a cached hub dataset or a folder with train and test files.")
    reading(s)
    s.add_argument("--ask", type=int, default=5, metavar="N",
                   help="Ask both models the first N questions (chat rows' last user turns) and show the answers "
                        "beside the expected ones (0: the loss only).")
    s.add_argument("--rows", type=int, default=256, help="Measure the loss on the first ROWS rows.")
    s.add_argument("--max-new-tokens", type=int,
                   help="Longest answer in tokens: 64 by default, 448 for a run whose data's answers carried their "
                        "reasoning.")
    s.add_argument("--json", action="store_true", help="Print the report as one JSON object.")
    weights(s)

    s = sub.add_parser("export", help="Export a run as an adapter, merged safetensors or GGUF.")
    s.add_argument("--run", required=True, help="Run id.")
    s.add_argument("--format", required=True, choices=["adapter", "safetensors", "gguf"], help="What to write.")
    s.add_argument("--quant", type=str.lower, choices=QUANT_NAMES, metavar="TYPE",
                   help="GGUF tensor type (GGUF only, any case): " + ", ".join(QUANT_NAMES) + "; q4_k_m (llama.cpp's "
                        "usual mix) when left out. f16/bf16/f32 are exact; q8_0 is near-lossless; q5_k_m and q4_k_m "
                        "are the usual quantized choices.")
    s.add_argument("--qlora-base", choices=["dequantized", "nf4"], default="dequantized",
                   help="GGUF of a QLoRA run: merge into the full-precision base (default) or into the base rounded "
                        "to nf4 as training saw it, so the file answers exactly as the run did.")
    s.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="Merged safetensors only: the weights' type; auto (the default) keeps each weight's stored "
                        "type, so a bfloat16 base gives a bfloat16 model of the same size; float32 is peft's merge "
                        "exactly, at twice the size.")
    s.add_argument("--out", required=True, help="Folder to create.")
    s.add_argument("--lmstudio", action="store_true",
                   help="GGUF only: also put the file in LM Studio's models folder (under 'tuneforge', named as the "
                        "--out folder), where LM Studio lists it; a hard link on the same drive, so no second copy.")
    s.add_argument("--ollama", metavar="NAME",
                   help="GGUF only: also hand the export to Ollama as NAME (MODEL, MODEL:TAG or NAMESPACE/MODEL:TAG; "
                        "`ollama create` with the Modelfile written beside it), so `ollama run NAME` answers with it. "
                        "Needs Ollama installed and running.")
    weights(s)

    s = sub.add_parser("data", help="Look at a dataset.")
    dsub = s.add_subparsers(dest="data_verb", parser_class=Parser, required=True)
    d = dsub.add_parser("inspect", help="Format, rows, problems and token statistics.")
    d.add_argument("path", help="Dataset file or folder.")
    d.add_argument("--model", help="Measure tokens with this model's tokenizer and chat template.")
    d.add_argument("--seq-len", type=int, help="Say how many rows this sequence length would cut (needs --model).")
    d.add_argument("--train-on", choices=TRAIN_ON, default=None,
                   help="Mark what a run asked for this would learn from (default: every assistant answer; a "
                        "preference pair's or a rated conversation's last one).")
    reading(d)
    d.add_argument("--json", action="store_true", help="Print as JSON.")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    runtime_env.prepare()
    try:
        if not argv:
            from ui.app import run_app  # the entry point is the one place app/ reaches for ui/

            return run_app(sys.argv[:1])
        args = build_parser().parse_args(argv)
        if not args.verb:
            raise KnownError("tuneforge: name a verb (profile, plan, train, resume, runs, plans, delete, strategies, "
                             "chat, evaluate, export, data); see `tuneforge --help`.")
        return VERBS[args.verb](args)
    except KnownError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output stopped reading (`| head`): nothing more to say
        cli_verbs.stdout_gone()
        return 0
    except Exception as e:  # a bug: one sentence here, details in a file
        return report_bug(e)


def report_bug(e: Exception) -> int:
    from app import paths

    where = paths.home() / "logs" / f"crash-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text("".join(traceback.format_exception(e)))
    print(f"error: Tuneforge hit a bug ({type(e).__name__}: {e}); the details are in {where}, please report them.",
          file=sys.stderr)
    return 70


from app import cli_export, cli_models, cli_show, cli_verbs  # noqa: E402  (the verbs: this file stays the parser)

VERBS = {**cli_verbs.VERBS, "models": cli_models.cmd_models, "export": cli_export.cmd_export,
         "show": cli_show.cmd_show}
