"""One benchmark cell, built and run exactly the way the trainer runs it; shared by the benchmark scripts.

A cell is a model shape × strategy (with its settings) × micro-batch × sequence length × gradient
checkpointing, and what it learns (supervised, or a preference objective: then a micro-batch is that many
pairs, two sequences each). Running one:

- the model is random-init from its config and saved once per shape (`random_model`), so nothing
  is downloaded and each strategy loads it through its own `load_model` (QLoRA quantizes there);
- training goes through `core.training.Session`, the object core/trainer.py drives: the strategy's
  own preparation, optimizer and before-step hook (LISA's layer switches), the trainer's loss scaling
  and gradient clipping. A benchmark that prepared the model by hand would measure something else;
- each step's peak memory is read on its own (`measure`): torch's allocator on CUDA, the process's
  resident high-water mark on the CPU, so a strategy whose memory creeps up over steps shows it;
- tokens per second count only the steps after the first, which pays for kernel selection, the
  allocator's first blocks and the optimizer state's creation.

`predict` gives the memory model's figure for the same cell, built the way the planner builds it.
"""

from __future__ import annotations

import gc
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core import objectives, optimizers, runtime_env, strategies  # noqa: E402
from core.memory_model import GIB, Estimate, Setup, estimate  # noqa: E402
from core.model_shape import ModelShape  # noqa: E402
from core.run_config import RunConfig  # noqa: E402

runtime_env.prepare()  # offline and quiet before transformers is imported

import torch  # noqa: E402

# Llama-3.2-1B's shape with an untied head: the default shape of the GPU benchmarks.
LLAMA_1B_SHAPE = dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                      tie_word_embeddings=False, max_position_embeddings=131072, rms_norm_eps=1e-5)
# The smoke runs' model: 64 wide is the least bitsandbytes' 4-bit CPU path takes; 4 layers so that
# LISA's 2 sampled layers really switch.
SMOKE_SHAPE = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=True,
                   max_position_embeddings=256)
SMOKE_LABEL = "CPU smoke run (a tiny model on the CPU; not a GPU result)"
NO_GPU = "No CUDA GPU here: nothing measured; run this on a machine with an NVIDIA GPU."


@dataclass(frozen=True)
class Cell:
    model: str  # a name for the config (a shipped config's file stem, or a shape defined here)
    strategy: str  # a name in core.strategies
    micro_batch: int
    seq_len: int
    checkpointing: bool
    options: dict = field(default_factory=dict)  # the strategy's settings (RunConfig.strategy_options)
    label: str = ""  # how tables name it when one strategy appears with several settings (e.g. "lisa+emb")
    objective: str = "sft"  # what it learns (core/objectives); a pair objective's micro-batch counts pairs

    @property
    def pairs(self) -> bool:
        return objectives.learns_pairs(self.objective)

    @property
    def name(self) -> str:
        return self.label or self.strategy

    def describe(self) -> dict:
        return {"model": self.model, "cell": self.name, "strategy": self.strategy, "options": self.options,
                "micro_batch": self.micro_batch, "seq_len": self.seq_len, "checkpointing": self.checkpointing,
                "objective": self.objective}


def bnb_version() -> str | None:
    try:
        import bitsandbytes
    except Exception:  # a broken CUDA setup fails in many ways; each means the same: no QLoRA cells
        return None
    return bitsandbytes.__version__


def versions() -> dict:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bnb_version(), "python": sys.version.split()[0]}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def shipped_llamas(max_params: float) -> dict[str, dict]:
    """Shipped Llama configs up to `max_params`. Only Llama: we build a LlamaConfig, and another family's
    config (Qwen's attention biases) would not be the model its shape describes."""
    found = {}
    for path in sorted((REPO / "resources" / "models").glob("*.json")):
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if cfg.get("model_type") == "llama" and ModelShape.from_config(cfg).params <= max_params:
            found[path.stem] = cfg
    return found


def smoke_process() -> None:
    """Settings of a smoke run's process: one CPU thread. A tiny model's matrices are a few microseconds of
    math, and handing them between threads costs more than that (on a busy CI machine, a thousand times more).
    The scripts hide any GPU when `--smoke` is on their command line; this checks that it worked."""
    if torch.cuda.is_available():
        raise SystemExit("A smoke run must not see a GPU; run the script with --smoke on its command line.")
    torch.set_num_threads(1)


def begin(smoke: bool, stem: str, out: Path | None) -> tuple[str, Path | None] | None:
    """A benchmark's start: (the device's name, the JSON to write: `out`, or results/<stem>-<gpu>.json for a GPU
    run, while a smoke run writes only to `out`); None, said, where it needs a GPU and there is none."""
    if not smoke and not torch.cuda.is_available():
        print(NO_GPU)
        return None
    if smoke:
        smoke_process()
    name = SMOKE_LABEL if smoke else torch.cuda.get_device_name()
    return name, out or (None if smoke else REPO / "benchmarks" / "results" / f"{stem}-{slug(name)}.json")


def capacity(device: str) -> int:
    """Bytes the device has: the GPU's memory, or the machine's RAM when training on the CPU."""
    if device == "cuda":
        return torch.cuda.get_device_properties(0).total_memory
    import psutil

    return psutil.virtual_memory().total


# --- the model ----------------------------------------------------------------------------------------------
def random_model(name: str, config: dict, root: str | Path, device: str) -> Path:
    """A random-init model of `config` saved under `root`/`name`, made once and reused by every cell."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(root) / name
    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(0)
    # On the GPU, bf16 and initialising there take seconds where the CPU takes a minute for 1B; the CPU
    # trains in fp32 (as the Session does), so its model is made in fp32.
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        made = AutoConfig.for_model(**config)  # a Llama for every shape but the mixture of experts' (moe_gpu.py)
        model = AutoModelForCausalLM.from_config(made, dtype=dtype)
    model.save_pretrained(folder)
    del model
    free(device)  # the cell's own model must find the memory empty
    return folder


# --- the memory model's prediction ---------------------------------------------------------------------------
def setup(cell: Cell, device: str) -> Setup:
    """The memory model's Setup for this cell, built as the planner builds it."""
    s = strategies.get(cell.strategy, need_built=False)
    on_gpu = device == "cuda"
    # As core.plan_target builds it: two sequences a pair (their answers' losses from the fused kernel too).
    return Setup(cell.strategy, cell.micro_batch * objectives.sequences_held(cell.objective), cell.seq_len,
                 compute_bytes=2 if on_gpu else 4, checkpointing=cell.checkpointing, on_gpu=on_gpu,
                 fused_loss=on_gpu,  # kernels "auto", as run
                 **s.setup_fields(s.options(cell.options), device))


def predict(cell: Cell, config: dict, device: str) -> Estimate:
    """The memory model's estimate for this cell."""
    return estimate(ModelShape.from_config(config), setup(cell, device))


def predicted_peak(est: Estimate, device: str) -> dict[str, int]:
    """The prediction in the figures `measure` reads. On CUDA torch's allocator sees neither the CUDA
    context nor (for allocated bytes) the allocator's slack; on the CPU the whole process is the figure."""
    if device != "cuda":
        return {"process": est.device_total}
    slack, context = est.device.get("allocator slack", 0), est.device.get("CUDA context", 0)
    allocated = est.device_total - slack - context
    return {"allocated": allocated, "reserved": allocated + slack, "total": est.device_total}


def headline(device: str) -> str:
    """The peak figure ratios are taken on: allocated bytes on CUDA (reserved ones add the allocator's
    fragmentation, which varies from run to run), the process's resident bytes on the CPU."""
    return "allocated" if device == "cuda" else "process"


# --- running steps --------------------------------------------------------------------------------------------
def random_batches(vocab: int, micro_batch: int, seq_len: int, steps: int, seed: int = 0,
                   objective: str = "sft") -> list[dict]:
    """One micro-batch per step of random tokens, on the CPU as the trainer collates them (each step
    moves its batch to the device); every token is trained, as `labels` equal to the inputs mean. For a
    preference objective the micro-batch is that many pairs (chosen rows, then rejected), each row's first
    quarter a prompt (not trained), with the reference log-probabilities DPO and KTO read (a random model's:
    log 1/vocab a token), and for rated answers (KTO) every other one rated bad."""
    g = torch.Generator().manual_seed(seed)
    out = []
    pairs = objectives.learns_pairs(objective)
    for _ in range(steps):
        ids = torch.randint(0, vocab, (micro_batch * (2 if pairs else 1), seq_len), generator=g)
        batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
        if pairs:
            batch["labels"][:, : seq_len // 4] = -100
            if objectives.get(objective).REFERENCE:
                trained = (batch["labels"][:, 1:] != -100).sum(1)
                batch["reference"] = -torch.log(torch.tensor(float(vocab))) * trained
            if objectives.learns_rated(objective):
                batch["rating"] = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(micro_batch)])
        out.append(batch)
    return out


def free(device: str) -> None:
    gc.collect()  # models and optimizers sit in reference cycles (peft, hooks)
    if device == "cuda":
        torch.cuda.empty_cache()  # so the next model is laid out as in a fresh process


def _status_kib(key: str) -> int | None:
    try:
        found = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _reset_peak(device: str) -> str:
    """Start a new peak; returns what the next reading spans."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return "per step"
    try:  # Linux: writing 5 resets the process's resident high-water mark (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    else:
        if _status_kib("VmHWM") is not None:
            return "per step"
    if _status_kib("VmHWM") is not None:
        return "the process's high-water mark since it started (not resettable here)"
    return "resident size at the end of each step (no high-water mark here)"


def _peak(device: str) -> dict[str, int]:
    if device == "cuda":
        return {"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved()}
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return {"process": hwm * 1024}
    import psutil  # no /proc (macOS, Windows): the resident size now, which is what a smoke run needs

    return {"process": psutil.Process().memory_info().rss}


def nvml_used() -> tuple[int, str] | None:
    """GPU memory of this whole process as the driver sees it (torch's figures leave out the context)."""
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        mine = [p.usedGpuMemory for h in handles for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                if p.pid == os.getpid() and p.usedGpuMemory]
        # In a container the driver may not list our pid; the whole GPU's use is the next best figure.
        return (mine[0], "process") if mine else (torch.cuda.device_memory_used(), "device")
    except Exception:  # no NVML library, no permission: a figure we can do without, the torch ones stand
        return None


Step = Callable[[list[dict]], int]  # runs one optimizer step over micro-batches, returns the tokens seen
Observe = Callable[[], dict]  # what to record after a step, outside its timing (e.g. optimizer state bytes)


def measure(step: Step, batches: list[dict], device: str, observe: Observe | None = None) -> dict:
    """Run one optimizer step per batch; each step's seconds, tokens and peak bytes, the overall peak, and
    tokens per second over the steps after the first."""
    if len(batches) < 2:
        raise ValueError("measuring speed takes at least 2 steps: the first is a warm-up")
    records, scopes = [], set()
    for batch in batches:
        scopes.add(_reset_peak(device))
        started = time.perf_counter()
        tokens = step([batch])
        if device == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously; the step is done when the GPU is
        seconds = time.perf_counter() - started
        records.append({"seconds": seconds, "tokens": tokens, "peak_bytes": _peak(device),
                        **(observe() if observe else {})})
    timed = records[1:]
    out = {"steps": records, "tokens_per_s": sum(r["tokens"] for r in timed) / sum(r["seconds"] for r in timed),
           "peak_bytes": {k: max(r["peak_bytes"][k] for r in records) for k in records[0]["peak_bytes"]},
           "peak_scope": "; ".join(sorted(scopes))}
    if device == "cuda":
        nvml = nvml_used()  # before anything is freed: the reserved blocks are still held
        out["nvml_bytes"], out["nvml_scope"] = (nvml if nvml else (None, None))
    return out


def run(prepare: Callable[[], tuple[Step, Observe | None]], batches: list[dict], device: str) -> dict:
    """Load and prepare whatever trains (`prepare`), then `measure` it from a clean slate; an out-of-memory
    error is a result ({"status": "oom"}), not a crash, and everything is freed before returning (so the
    next cell starts from a clean slate too)."""
    oom = False
    try:
        step, observe = prepare()
        if device == "cuda":  # loading leaves transient blocks (the 4-bit loader its 16-bit staging) behind
            free(device)
        result = measure(step, batches, device, observe)
    except torch.OutOfMemoryError:
        oom = True  # handled outside the except block, so the traceback's frames (and tensors) are gone
    step = observe = None
    free(device)
    return {"status": "oom"} if oom else {"status": "measured", **result}


def session_config(cell: Cell, model_dir: Path, device: str, run_dir: str | Path,
                   kernels: list[str] | str = "auto") -> RunConfig:
    """What the trainer would get for this cell (our kernels as the trainer picks them unless given); the
    run folder and history are never opened."""
    return RunConfig(run_id="benchmark", run_dir=str(Path(run_dir) / "run"), db_path=str(Path(run_dir) / "history.db"),
                     model_path=str(model_dir), data_path="unused", strategy=cell.strategy,
                     strategy_options=dict(cell.options), device=device, seq_len=cell.seq_len,
                     micro_batch=cell.micro_batch, grad_accum=1, gradient_checkpointing=cell.checkpointing,
                     kernels=kernels, objective=cell.objective)


def run_session(cell: Cell, model_dir: Path, device: str, steps: int, seed: int = 0,
                kernels: list[str] | str = "auto") -> dict:
    """`steps` optimizer steps of the cell through core.training.Session on random batches, measured.
    Each step also records the optimizer's live state bytes, and LISA's active layers."""
    from core import training

    vocab = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    batches = random_batches(vocab, cell.micro_batch, cell.seq_len, steps, seed, cell.objective)

    def prepare():
        with tempfile.TemporaryDirectory(prefix="tuneforge-bench-run-") as run_dir:
            session = training.Session(session_config(cell, model_dir, device, run_dir, kernels), total_steps=steps)

        def step(micro_batches):
            return session.step(micro_batches)[1]

        def observe():
            seen = {"optimizer_state_bytes": optimizers.state_bytes(session.optimizer)}
            sampler = getattr(session.model, "tuneforge_lisa", None)
            return seen | ({"active_layers": list(sampler.active)} if sampler else {})

        return step, observe

    return run(prepare, batches, device)


def gib(n: float | None, digits: int = 4) -> float | None:
    return None if n is None else round(n / GIB, digits)
