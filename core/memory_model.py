"""Peak memory of a training step, term by term, from the model's config alone.

Each figure is a named term (weights, gradients, optimizer state, activations, logits, ...) so the
UI can draw it as a bar and a plan can say which term does not fit. Three places are modelled:
the training device (GPU memory, or RAM when training on the CPU), host RAM, and disk.

Where the figures come from:
- Weights, gradients and optimizer state are counted from the parameter counts and the storage
  type (bf16, fp32, nf4 with double quantization, int8), the way our trainer and bitsandbytes
  store them.
- Activations are what autograd saves for backward, per token per decoder layer. The coefficients
  below were measured with `torch.autograd.graph.saved_tensors_hooks` on HF Llama models of five
  different shapes (transformers 5.x, peft 0.21; the fits were exact to 0.1%), and
  `tests/core/test_memory_model.py` measures them again on fresh shapes, so a library change that
  moves them fails a test instead of a user's run. QLoRA's saved tensors measured the same as
  LoRA's in 16-bit (bitsandbytes keeps only the packed weight for backward).
- With `activations_on_host` (core/offload/activations.py) what forward saves goes to pinned RAM,
  checkpointed layers' inputs included, and the device keeps what backward has brought back: one layer's
  saved tensors, or with checkpointing two layers' inputs and the layer being recomputed (measured on the
  CPU against the bytes really moved, in tests/core/test_memory_model.py).
- Logits: the loss upcasts to fp32 and log-softmax keeps its fp32 output (4 bytes × vocab per
  token, measured); at the start of backward two more vocab-wide fp32 gradients exist.
- The CUDA context and the allocator's slack cannot be computed; they are a constant plus a share
  of the allocated bytes, and calibration from real runs (core.memory_watch, recorded per run and
  used by the next plan) corrects them. On the CPU the slack is the C library's: glibc keeps freed blocks
  for reuse, and a step's tensors do not all fit the holes the last step left; measured at 0.45 of the
  activations and logits (default model, LoRA and QLoRA; full fine-tuning 0.2), unless the trainer hands
  freed blocks back at once (core.memory_watch.return_freed_blocks, when RAM is short of the plan).
- The optimizer step has its own peak: torch's foreach AdamW (adapters) holds one parameter-sized
  temporary, our MasterAdamW (trained base weights) two fp32 temporaries of the rows it updates at a time
  (`step_temporaries`), while the activations are gone; so the peak is the larger of backward and the step.
- What depends on the strategy (the base's storage, the activation family, how many weights train,
  whether they are base weights) is asked of the strategy itself (core.strategies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import galore, strategies
from core.model_shape import ModelShape
from core.optimizers import CHUNK_ELEMENTS, LOW_RANK
from core.offload.weight_store import STAGING
from tuneforge_kernels.patch import ARCHITECTURES, NOT_FOR, WHOLE_MODELS

GIB = 1024**3

# Saved bytes per token per decoder layer: coefficients of (hidden, intermediate, kv width, lora rank).
# Keyed by (activation family, bytes of the compute dtype). Measured; see the module docstring.
ACTIVATION_COEFFICIENTS = {
    ("full", 4): (32, 16, 8, 0),
    ("full", 2): (20, 8, 4, 0),
    ("lora", 4): (24, 16, 8, 28),  # fp32 adapters: inputs cast to fp32 for each adapter
    ("lora", 2): (36, 10, 4, 28),
    ("dora", 4): (48, 32, 24, 28),  # DoRA also keeps each layer's output for the magnitude
    ("dora", 2): (54, 22, 16, 28),
}
LOGITS_SAVED_BYTES = 4  # per token per vocab entry: fp32 log-softmax output
LOGITS_BACKWARD_BYTES = 8  # two more fp32 vocab-wide gradients at the start of backward
# tuneforge_kernels/fused_linear_cross_entropy.py's MIN_CHUNK_ROWS (not imported: it loads Triton)
FUSED_LOSS_MIN_ROWS = 256
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 per 256 absmax (double quant)
INT8_BYTES = 1.0  # LLM.int8 codes (row scales are negligible)
CUDA_CONTEXT = int(0.5 * GIB)  # driver context and kernel images, outside torch's allocator
ALLOCATOR_SLACK = 0.08  # caching-allocator fragmentation, share of the bytes allocated while training
CPU_ALLOCATOR_SLACK = 0.45  # glibc's heap on the CPU: share of the activations and logits, kept freed for reuse
RUNTIME_RAM = {False: int(0.6 * GIB), True: int(2.0 * GIB)}  # Python, torch and libraries; CUDA builds map more

# Optimizer state in bytes per trainable parameter, given the parameter's own bytes.
OPTIMIZERS = {
    "adamw": lambda param_bytes: 2 * param_bytes,  # torch AdamW keeps two moments in the parameter's dtype
    "adamw8bit": lambda param_bytes: 2.0,  # bitsandbytes block-wise 8-bit moments
    "paged_adamw8bit": lambda param_bytes: 2.0,  # same bytes, but pages to RAM under pressure
    "adafactor": lambda param_bytes: 0.1,  # factored second moment: rows + columns per matrix (≈ nothing)
    "galore": lambda param_bytes: 8,  # fp32 moments (the decoder's matrices: galore_saving)
    "frugal": lambda param_bytes: 8,  # GaLore's state: the rest of each gradient takes a step with none
}
WEIGHT_STORAGE = ("fp32", "bf16", "fp16", "nf4", "int8")
BEST_ON_DISK = "weights of the lowest validation loss"  # the disk term of Setup.keep_best


@dataclass(frozen=True)
class Setup:
    """One way to run a training step; everything the memory depends on besides the model."""

    strategy: str  # a name in core.strategies
    micro_batch: int
    seq_len: int
    compute_bytes: int = 2  # 2 for bf16/fp16, 4 for fp32 (CPU)
    checkpointing: bool = False
    lora_r: int = 16
    lora_experts: bool = True  # a mixture of experts: LoRA on each expert too (core/strategies/lora.py)
    optimizer: str = "adamw"
    galore_rank: int = 0  # optimizer "galore" or "frugal": the rank of the decoder matrices' gradient subspace
    stochastic_rounding: bool = False  # 16-bit trained base weights updated without fp32 masters
    lisa_layers: int = 2  # layers trained at a time (LISA)
    lisa_embeddings: bool = False  # LISA also trains the embeddings and head
    on_gpu: bool = True
    offload: str = ""  # "", "optimizer" (states in RAM) or "weights" (frozen weights streamed from RAM/NVMe)
    weights_on_disk: bool = False  # offloaded weights live on NVMe, not RAM
    activations_on_host: bool = False  # what forward saves for backward waits in pinned RAM
    resident_layers: int = 2  # streamed weights: layers on the device at a time (the offload strategy's ring)
    frozen_streamed: bool = False  # LISA's stream_frozen: the layers not training stream, the γ trained ones stay
    quantized_base: bool = True  # a 4-bit strategy's base really is 4-bit (offload's quantize=False streams 16-bit)
    keep_checkpoints: int = 1  # RunConfig's: the newest stays; the next is written beside it before it goes
    keep_best: bool = True  # best/ beside the result: the weights of the lowest validation loss (core/results.py)
    fused_loss: bool = False  # our fused linear cross-entropy is patched in (CUDA, kernels on): no full logits
    layer_major: bool = False  # a layer-major step (offload, LISA): every layer's input kept for each micro-batch
    accumulation: int = 1  # micro-batches per optimizer step (what layer-major keeps grows with it)

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len

    @property
    def experts_4bit(self) -> bool:
        """A mixture of experts' experts are in 4 bits too: frozen, under a strategy that quantizes them."""
        return (not self.lora_experts and self.weight_storage == "nf4"
                and strategies.get(self.strategy, need_built=False).experts_in_4bit)

    @property
    def weight_storage(self) -> str:
        if strategies.get(self.strategy, need_built=False).base_storage == "nf4" and self.quantized_base:
            return "nf4"
        return {2: "bf16", 4: "fp32"}[self.compute_bytes]


@dataclass
class Estimate:
    device: dict[str, int] = field(default_factory=dict)  # GPU memory (or RAM when training on the CPU)
    ram: dict[str, int] = field(default_factory=dict)  # host RAM besides the device terms
    disk: dict[str, int] = field(default_factory=dict)  # run folder: checkpoints, result, offload files

    @property
    def device_total(self) -> int:
        return sum(self.device.values())

    @property
    def ram_total(self) -> int:
        return sum(self.ram.values())

    @property
    def disk_total(self) -> int:
        return sum(self.disk.values())


def weight_bytes(shape: ModelShape, storage: str, experts_4bit: bool = False) -> int:
    """Bytes of all weights. Quantized storage applies to the decoder's linear layers, and to a mixture of experts'
    experts where `experts_4bit` (core/four_bit_experts.py); embeddings, head and norms stay in 16-bit (that is what
    bitsandbytes leaves alone)."""
    linear = shape.linear_params + (shape.layers_unmodelled if experts_4bit and shape.experts else 0)
    rest = shape.params - linear
    per = {"fp32": 4, "bf16": 2, "fp16": 2}
    if storage in per:
        return shape.params * per[storage]
    if storage == "nf4":
        return int(linear * NF4_BITS / 8) + rest * 2
    if storage == "int8":
        return int(linear * INT8_BYTES) + rest * 2
    raise ValueError(f"unknown weight storage {storage!r}; one of {', '.join(WEIGHT_STORAGE)}")


def layer_weight_bytes(shape: ModelShape, storage: str, experts_4bit: bool = False) -> int:
    """Bytes of the decoder layers' weights alone: what the offload strategy streams (embeddings, head and
    final norm, in 16-bit or fp32, stay on the device). What the meta model counts inside the layers beyond the
    blocks (`layers_unmodelled`: a mixture's experts, Gemma 4's wider full attention) is the layers' own: it streams
    with them."""
    outside = (shape.params - shape.decoder_params - shape.layers_unmodelled) * (4 if storage == "fp32" else 2)
    return weight_bytes(shape, storage, experts_4bit) - outside


def trainable_params(shape: ModelShape, s: Setup) -> int:
    """Weights that have gradients and optimizer state at one time."""
    return strategies.get(s.strategy, need_built=False).trainable_params(shape, s)


def largest_trained_tensor(shape: ModelShape, s: Setup) -> int:
    """Elements of the biggest trained weight (what the optimizer's per-tensor temporaries are sized by)."""
    biggest_linear = max(a * b for a, b in shape.linear_shapes())
    with_embeddings = s.strategy == "full" or (s.strategy == "lisa" and s.lisa_embeddings)
    return max(biggest_linear, shape.embedding_params if with_embeddings else 0)


def _one_layer(shape: ModelShape, s: Setup) -> tuple[int, int]:
    """Bytes one layer saves for this step's tokens with nothing recomputed. (DoRA's weight norm builds
    an in×in identity per module, but detached: it is freed at once, so it is no saved cost; its brief
    peak is `dora_norm_bytes`.)"""
    family = strategies.get(s.strategy, need_built=False).activations
    a_h, a_i, a_kv, a_r = ACTIVATION_COEFFICIENTS[(family, s.compute_bytes)]
    kv_width = shape.kv_heads * shape.head_dim
    r = s.lora_r if family != "full" else 0
    per_token = a_h * shape.hidden + a_i * shape.intermediate + a_kv * kv_width + a_r * r
    return per_token * s.tokens


def dora_norm_bytes(shape: ModelShape) -> int:
    """The transient peak of peft's DoRA weight norm, on top of everything else: each forward (and each
    recompute in backward, under checkpointing) pushes an in×in identity through the fp32 adapter, then
    holds the in×out adapter weight in fp32 beside it. Nothing is saved, but the largest module's pair is
    briefly alive at the peak: on an H200 a checkpointed 1B-shape DoRA step peaked 0.51 GiB above the
    prediction without this term (benchmarks/results/strategies-nvidia-h200.json)."""
    return max(i * i * 4 + i * o * 4 for i, o in shape.linear_shapes())


def saved_after_forward(shape: ModelShape, s: Setup) -> int:
    """What autograd holds for the decoder layers when forward ends (the measurable part)."""
    per_tokens = _one_layer(shape, s)
    if strategies.get(s.strategy, need_built=False).trains_base:  # final norm internals and the head's input
        outside = (2 * s.compute_bytes + 4) * shape.hidden * s.tokens
    else:  # the embedding output made to require grad (fp32) or the final norm's input
        outside = (4 if s.checkpointing else 2) * shape.hidden * s.tokens
    if s.checkpointing:  # each layer keeps only its input
        return shape.layers * s.compute_bytes * shape.hidden * s.tokens + outside
    return shape.layers * per_tokens + outside


def activation_bytes(shape: ModelShape, s: Setup) -> int:
    """The decoder layers' share of the peak."""
    if s.layer_major:  # core/offload/layer_major.py: each layer's input and the last output (later its gradient,
        # going down), for every micro-batch; one layer recomputed for one micro-batch at a time, as checkpointing does
        kept = (shape.layers + 1) * s.accumulation * s.compute_bytes * shape.hidden * s.tokens
        return kept + recomputed_layer(shape, s)
    return saved_after_forward(shape, s) + (recomputed_layer(shape, s) if s.checkpointing else 0)


def recomputed_layer(shape: ModelShape, s: Setup) -> int:
    """What recomputing one layer in backward adds to the peak: backward gets there only after the logits'
    gradients are freed, so only what exceeds those counts (with the fused loss there are none to free)."""
    freed = 0 if fused_loss(shape, s) else s.tokens * shape.vocab * LOGITS_BACKWARD_BYTES
    return max(0, _one_layer(shape, s) - freed)


def activations_moved(shape: ModelShape, s: Setup) -> int:
    """What `activations_on_host` sends to RAM each micro-batch: everything forward saves outside the weights,
    the inputs checkpointed layers keep included (torch's checkpoint saves them as any op saves its inputs, so
    they pass through the same hooks); the fp32 log-softmax output moves too, but comes back first in backward,
    so the logits' peak stays."""
    return saved_after_forward(shape, s) + log_softmax_bytes(shape, s)


def activations_back(shape: ModelShape, s: Setup) -> int:
    """What `activations_on_host` keeps on the device at backward's peak: one layer's saved tensors back from RAM
    (checkpointing: two layers' inputs, the one recomputing and the next arriving, and the recomputed layer)."""
    if not s.checkpointing:
        return _one_layer(shape, s)
    return 2 * s.compute_bytes * shape.hidden * s.tokens + recomputed_layer(shape, s)


def log_softmax_bytes(shape: ModelShape, s: Setup) -> int:
    """The fp32 log-softmax output transformers' loss saves for backward (none with the fused loss)."""
    return 0 if fused_loss(shape, s) else s.tokens * shape.vocab * LOGITS_SAVED_BYTES


def fused_loss(shape: ModelShape, s: Setup) -> bool:
    """The run computes its loss with tuneforge_kernels/fused_linear_cross_entropy: asked for, on a GPU, and an
    architecture our kernels patch with it, loaded alone or whole where the patch knows the whole model's forward
    (elsewhere transformers' head builds the full logits: GOT-OCR2, a Qwen2 loaded whole, once planned without)."""
    return (s.fused_loss and s.on_gpu and shape.model_type in ARCHITECTURES
            and "cross_entropy" not in NOT_FOR.get(shape.model_type, {})
            and (not shape.loaded_whole or shape.loaded_whole in WHOLE_MODELS))


def logits_bytes(shape: ModelShape, s: Setup) -> int:
    if not fused_loss(shape, s):
        return s.tokens * shape.vocab * (LOGITS_SAVED_BYTES + LOGITS_BACKWARD_BYTES)
    # Chunks of rows whose logits are about as large as the hidden states (kernels' chunk_rows), the
    # hidden states' gradient kept for backward, and the head's fp32 gradient when the head trains.
    head_trains = s.strategy == "full" or (s.strategy == "lisa" and s.lisa_embeddings)
    least = max(FUSED_LOSS_MIN_ROWS, shape.hidden if head_trains else 0)  # chunk_rows: H rows when the head trains
    rows = min(s.tokens, max(least, -(-s.tokens * shape.hidden // shape.vocab)))
    return (rows * shape.vocab + s.tokens * shape.hidden) * s.compute_bytes + \
        (shape.vocab * shape.hidden * 4 if head_trains else 0)


def step_temporaries(shape: ModelShape, s: Setup, full_like: bool, trained_bytes: int) -> int:
    """What the optimizer step allocates besides the state. Torch's foreach AdamW (adapters): a copy of the trained
    weights. MasterAdamW (base weights): two fp32 temporaries of the tensor it updates, in rows of at most
    CHUNK_ELEMENTS; with stochastic rounding two more (the weight's fp32 copy, its random bits). GaLore and
    FRUGAL step a decoder matrix whole: at a refresh its fp32 gradient, its SVD's two factors and workspace
    (about 4 fp32 copies of the matrix). A host optimizer's temporaries are in RAM (0 here)."""
    if s.optimizer not in ("adamw", *LOW_RANK):
        return 0
    if not full_like:
        return trained_bytes
    part = min(largest_trained_tensor(shape, s), CHUNK_ELEMENTS)
    whole = max(a * b for a, b in shape.linear_shapes()) if s.optimizer in LOW_RANK else 0
    rounding = s.stochastic_rounding and s.compute_bytes < 4
    return max(2 * 4 * part, 4 * 4 * whole) + (2 * 4 * max(part, whole) if rounding else 0)


def galore_saving(shape: ModelShape, rank: int) -> int:
    """Bytes GaLore's low-rank moments and projectors save against full fp32 moments, over the decoder's matrices
    (core/galore.py: a matrix whose smaller side is not above the rank keeps full moments)."""
    return sum(n * sum(8 * a * b - galore.state_bytes((a, b), rank) for a, b in shapes if galore.projects((a, b), rank))
               for n, shapes, _ in shape.blocks())


def estimate(shape: ModelShape, s: Setup) -> Estimate:
    """Peak memory of one training step of `shape` run as `s`, by term."""
    if s.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {s.optimizer!r}; one of {', '.join(OPTIMIZERS)}")
    strategy = strategies.get(s.strategy, need_built=False)
    trainable = trainable_params(shape, s)
    weights = weight_bytes(shape, s.weight_storage, s.experts_4bit)
    full_like = strategy.trains_base
    offload = s.offload or ("weights" if strategy.streams_weights else "")
    param_bytes = s.compute_bytes if full_like else 4  # adapters are kept in fp32 by peft
    optimizer = int(trainable * OPTIMIZERS[s.optimizer](param_bytes))
    # MasterAdamW (and GaLore's, below): fp32 moments, and an fp32 master of a 16-bit weight unless it rounds
    # stochastically
    ours = full_like and s.optimizer in ("adamw", *LOW_RANK)
    masters = ours and s.compute_bytes < 4 and not s.stochastic_rounding
    if ours:
        optimizer = trainable * (8 + (4 if masters else 0))
    if full_like and s.optimizer in LOW_RANK:
        optimizer -= galore_saving(shape, s.galore_rank)
    grads = trainable * param_bytes
    est = Estimate()
    dev = est.device

    if offload == "weights" or s.frozen_streamed:
        # The weights stream through a ring of `resident_layers` buffers (the one computing, the next arriving).
        # Over a frozen base (core/offload/stream.py) only the decoder layers stream: embeddings, head and final
        # norm stay on the device, in 16-bit; so do the layers LISA trains, in their own memory.
        outside = 0 if full_like and not s.frozen_streamed else weights - layer_weight_bytes(shape, s.weight_storage,
                                                                                          s.experts_4bit)
        per_layer = (weights - outside) // shape.layers
        dev[f"weights ({s.resident_layers} layers resident, rest streamed)"] = s.resident_layers * per_layer
        if s.frozen_streamed:
            dev[f"trained layers' weights ({s.lisa_layers}, kept on the device)"] = s.lisa_layers * per_layer
        if outside:
            dev["weights outside the layers (embeddings, head, final norm)"] = outside
        where = est.disk if s.weights_on_disk else est.ram
        where["offloaded weights"] = weights - outside
        if s.weights_on_disk:  # one layer copying to the device, one read and waiting, one being read
            est.ram["pinned staging buffers"] = STAGING * per_layer
    else:
        dev["weights"] = weights
    if not full_like:
        dev["adapter weights (fp32)"] = trainable * 4
    dev["gradients"] = grads
    label = f"optimizer state ({s.optimizer}{', fp32 masters' if masters else ''})"
    if offload == "optimizer" or (offload == "weights" and full_like):
        est.ram[label + " (offloaded)"] = optimizer
    else:
        dev[label] = optimizer
    if offload == "optimizer" and full_like:  # core.offload.host_adam copies each gradient into its pinned pool
        est.ram["gradients copied to RAM"] = grads
    if s.activations_on_host and not s.layer_major and s.on_gpu:  # in RAM until backward brings them back
        moved = activations_moved(shape, s)
        est.ram["activations saved for backward (pinned)"] = moved
        dev["activations (in RAM, one layer back at a time)"] = activations_back(shape, s)
    else:
        kind = " (layer-major)" if s.layer_major else " (checkpointed)" if s.checkpointing else ""
        dev["activations" + kind] = activation_bytes(shape, s)
    dev["logits and loss"] = logits_bytes(shape, s)
    if strategy.activations == "dora":
        dev["DoRA weight-norm temporaries"] = dora_norm_bytes(shape)
    # Backward and the optimizer step peak at different times: count whichever is larger.
    step_temp = 0 if offload == "optimizer" else step_temporaries(shape, s, full_like, trainable * param_bytes)
    backward = dev["logits and loss"] + next(v for k, v in dev.items() if k.startswith("activations"))
    if step_temp > backward:
        dev["optimizer step temporaries (beyond backward)"] = step_temp - backward
    if s.on_gpu:
        static = sum(v for k, v in dev.items() if k.startswith("weights"))  # allocated once, in big blocks
        dev["allocator slack"] = int(ALLOCATOR_SLACK * (sum(dev.values()) - static))
        dev["CUDA context"] = CUDA_CONTEXT
    else:  # what each step allocates and frees again is where the heap's holes come from
        dev["allocator slack"] = int(CPU_ALLOCATOR_SLACK * backward)
    # On the CPU the device is RAM, so the process's own footprint is a device term.
    (est.ram if s.on_gpu else dev)["Python, torch and libraries"] = RUNTIME_RAM[s.on_gpu]
    if s.on_gpu:  # loading reads the weights through RAM once; the page cache gives it back
        est.ram["model loading (transient)"] = min(weights, 2 * GIB)

    # What one checkpoint holds: the trained weights (every layer for LISA: any may have changed) and the state.
    saved_state = (shape.params * s.compute_bytes if full_like else trainable * param_bytes) + optimizer
    est.disk["checkpoints"] = (s.keep_checkpoints + 1) * saved_state  # the kept ones and the next, being written
    est.disk["result"] = shape.params * 2 if full_like else trainable * 4
    if s.keep_best:  # at most one more result, replaced as the validation loss reaches new lows
        est.disk[BEST_ON_DISK] = est.disk["result"]
    return est
