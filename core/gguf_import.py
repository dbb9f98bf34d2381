"""A .gguf model's weights into a Hugging Face folder, one tensor at a time, for the architectures we export.

Why our own: transformers' GGUF loader holds the whole model in float32 twice on the way (the loaded model,
and a fresh copy, since a GGUF-loaded model refuses save_pretrained): 1 GiB for the 135M default model,
about 60 GiB of RAM for an 8B file, more than most laptops have. It also parses the file with gguf's reader
once per call and rebuilds its tensor-name map for every tensor. benchmarks/gguf_import_speed.py measures
both ways in the same run.

Here the tensor table comes from our reader (core/gguf_export/reader.py), each tensor is de-quantized by
gguf's numpy decoders a chunk at a time, turned back into Hugging Face's layout by its architecture's
`untransform` where it needs that (the inverse of what GGUF export does, tested round trip for every
registered architecture), and written into safetensors shards as they fill: RAM holds one shard
(SHARD_BYTES), one chunk in float32 and at most one rearranged tensor (Llama's Q) in float32, never the model. A model
tensor the file keeps in parts (Architecture.parts: Qwen3 MoE's fused gate_up_proj as ffn_gate_exps and ffn_up_exps)
is put together again, its parts read one after the other into the same shard.

What the folder is stored as: one dtype for every tensor (`folder_dtype`), since a tensor whose dtype is
the one the model loads in stays a view of the memory-mapped file, and a few float32 norms beside float16
matrices keep the whole file mapped, and counted in the trainer's RAM, for the run. An all-float32 file
stays float32, exactly; one of bfloat16 matrices bfloat16, its float32 norms too (llama.cpp widens norms to
float32; in a bfloat16 model they were bfloat16); any other (quantized, float16) becomes float16, whose
11 significant bits hold what a block's float16 scale times a small integer gives to within 0.05% (a
hundred times finer than 4- or 8-bit rounding itself) at half the disk of float32. A tensor whose values
float16 cannot hold (past 65504) stays float32.

The config comes from transformers' mapping of GGUF metadata where its reader knows the architecture, else
(SmolLM3, Granite, OLMo 2 and 3, and Gemma 4 and Qwen3 MoE, of which it reads too little) from our architecture's
inverse of what export writes (`config`), and then `complete_config` adds what that mapping misses (rope scaling,
partial rope, head size, settings kept as tensors); the tokenizer from transformers' conversion of the vocabulary,
which needs no config (`tokenizer`). model_source.py does that around `write_weights`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import gguf_parts
from core.errors import DiskFull, IncompleteModel
from core.gguf_export import architectures, reader

SHARD_BYTES = 1 << 30  # the most one shard holds: what RAM holds at once, besides the tensor being read
CHUNK_VALUES = 1 << 24  # values de-quantized at once (64 MiB in float32)
HEADROOM = 256 << 20  # left free on the disk after the folder is written
INDEX = "model.safetensors.index.json"
# A vision tower and its projector in the same file (Ollama keeps its vision models so; llama.cpp's mmproj files
# name theirs alike): Tuneforge tunes the language model, so those are left out, and the conversion says so.
VISION = ("v.", "mm.")


def supports(config) -> bool:
    """Whether `write_weights` can place this model's tensors (else transformers' loader does it)."""
    return config.model_type in architectures.REGISTRY


def reads_config(contents: reader.Contents) -> bool:
    """Whether the file's config comes from our `config`: an architecture we export that transformers' GGUF
    reader does not know (it has no mapping of the file's keys to a config)."""
    arch = architectures.by_gguf_name(contents.metadata.get("general.architecture", ""))
    # or a file our `config` gives another model type than the architecture's: a llama file with experts is Mixtral's,
    # which transformers' mapping reads as a Llama without them
    return arch is not None and (not arch.transformers_reads
                                 or arch.config(contents.metadata)["model_type"] not in arch.model_types)


def config(contents: reader.Contents):
    """The model's config from the file's metadata, by its architecture's inverse of export's `metadata`, and what
    its tensor names say that no key does (`config_from_tensors`: Gemma 4's keys used as values); the head is tied
    where the file has no output matrix, as llama.cpp reads it."""
    from transformers import AutoConfig

    arch = architectures.by_gguf_name(contents.metadata["general.architecture"])
    fields = arch.config(contents.metadata)
    fields.update(arch.config_from_tensors({t.name for t in contents.tensors}, fields))
    fields["tie_word_embeddings"] = head_tied(contents)
    return AutoConfig.for_model(**fields)


def head_tied(contents: reader.Contents) -> bool:
    """Whether the output head is the token embedding: the file has no output matrix, as llama.cpp reads it."""
    return all(t.name != "output.weight" for t in contents.tensors)


def complete_config(gguf: Path, contents: reader.Contents, config) -> None:
    """Put into `config` the settings the file keeps as tensors, not keys (Llama 3's rope scaling as rope_freqs,
    Phi-3's long-context factors), which neither transformers' mapping nor `config` reads: without them the
    model would rotate its attention otherwise than it was trained to (and the tensors would have no place).
    And what transformers' mapping misses: what the architecture's `config_from_keys` finds in the keys (Qwen3's
    head size, Phi-4 mini's partial rope), whether the head is tied (it looks for output.weight in the first part of
    a split model only), and a padding id past the vocabulary, which only a config class's default can give."""
    pad = getattr(config, "pad_token_id", None)
    if isinstance(pad, int) and not 0 <= pad < config.vocab_size:  # a class default (Phi-3's 32000) the file
        config.pad_token_id = None  # does not say, past its vocabulary: the model could not even be built
    arch = architectures.REGISTRY.get(config.model_type)
    if arch is None:
        return
    arch = arch.variant(config.to_dict())
    # transformers' mapping looks for output.weight in the first part of a split model only
    config.tie_word_embeddings = head_tied(contents)
    if not reads_config(contents):  # ours reads every key it knows already
        for field, value in arch.config_from_keys(contents.metadata, config.to_dict()).items():
            setattr(config, field, value)
    present = [t for t in contents.tensors if t.name in arch.extra_names]
    if not present:
        return
    extra = {t.name: np.concatenate([chunk.reshape(-1) for _, chunk in _chunks(gguf, contents, t)]) for t in present}
    fields = arch.config_from_extra(extra, config.to_dict(), contents.metadata)
    if fields is None:
        raise IncompleteModel(f"{gguf}: its {' and '.join(extra)} hold rope factors that no {config.model_type} rope "
                              "setting we know gives; use the model's Hugging Face folder instead.")
    for field, value in fields.items():
        setattr(config, field, value)


def tokenizer(gguf: Path, contents: reader.Contents | None = None):
    """The tokenizer transformers builds from the file's vocabulary: through AutoTokenizer, which picks the model's
    tokenizer class from the config, where transformers reads the architecture; else as a plain fast tokenizer
    (building one needs no config). Import and export's verification both read a file's tokenizer here."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    contents = contents or reader.read(gguf, stop_at="general.architecture")
    load = PreTrainedTokenizerFast if reads_config(contents) else AutoTokenizer
    return load.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@dataclass(frozen=True)
class Placement:
    info: reader.TensorInfo  # where the tensor is in the file
    hf_name: str  # where it goes in the model
    dtype: str  # what it is stored as: "float32", "float16" or "bfloat16"
    # where the file holds a model tensor in parts (Architecture.parts: a mixture of experts' fused gate_up_proj as
    # ffn_gate_exps and ffn_up_exps), the rows of each of its matrices this one fills, and the whole tensor's shape
    rows: slice | None = None
    whole: tuple[int, ...] | None = None
    columns: bool = False  # `rows` are the columns of each matrix (Architecture.split_columns: gpt-oss's experts)

    @property
    def nbytes(self) -> int:
        return math.prod(self.info.shape) * (4 if self.dtype == "float32" else 2)


def write_weights(gguf: Path, contents: reader.Contents, config, out: Path, progress) -> str:
    """The file's weights (`contents`: its `read`) as safetensors in the folder `out`; returns the dtype most
    of them are stored in.

    May set `config.tie_word_embeddings`: a file without an output matrix reuses the token embeddings,
    as llama.cpp does."""
    if head_tied(contents) and not config.tie_word_embeddings:
        config.tie_word_embeddings = True
    placements = plan(gguf, contents, config)
    cfg = config.to_dict()
    arch = architectures.REGISTRY[cfg["model_type"]].variant(cfg)
    total = sum(p.nbytes for p in placements)
    free = shutil.disk_usage(out).free
    if free < total + HEADROOM:
        raise DiskFull(f"Not enough disk space to convert {gguf.name}: the model folder needs about "
                       f"{(total + HEADROOM) / 2**30:.1f} GiB in {out.parent}, which has {free / 2**30:.1f} GiB free; "
                       "free some space or set another data folder in Settings.")
    shards = _shards(placements)
    files = [INDEX.removesuffix(".index.json")] if len(shards) == 1 else \
        [f"model-{k:05d}-of-{len(shards):05d}.safetensors" for k in range(1, len(shards) + 1)]
    done, weight_map, by_dtype = 0, {}, {}  # by_dtype: bytes written per stored dtype
    for shard, file in zip(shards, files):
        tensors = {}
        for p in shard:
            progress.update(done / len(placements), f"Converting {gguf.name}: tensor {done + 1} of {len(placements)}")
            try:
                t = _tensor(gguf, contents, p, arch, cfg)
                tensors[p.hf_name] = t if p.rows is None else _into(tensors.get(p.hf_name), p, t)
            except NotImplementedError:  # gguf has no numpy decoder for this type
                raise IncompleteModel(f"{gguf}: tensor {p.info.name} is stored as {_type_name(p.info.ggml_type)}, "
                                      "which cannot be de-quantized here yet; use a file quantized as Q4_K_M, Q8_0 "
                                      "or F16.") from None
            dtype = str(t.dtype).removeprefix("torch.")
            by_dtype[dtype] = by_dtype.get(dtype, 0) + t.numel() * t.element_size()
            weight_map[p.hf_name] = file
            done += 1
        _save(tensors, out / file)
        del tensors
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(by_dtype.values())}, "weight_map": dict(sorted(weight_map.items()))}
        (out / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return max(by_dtype, key=by_dtype.get)


def _into(whole, p: Placement, part):
    """The model tensor `p` is a part of (`whole`, or a new one where it is the first part read) with `part` in its
    rows; float32 throughout where any part needed it (past float16's range)."""
    import torch

    if whole is None:
        whole = torch.zeros(p.whole, dtype=part.dtype)
    elif whole.dtype != part.dtype:
        whole, part = whole.float(), part.float()
    whole[architectures.part_index(p.rows, p.columns)] = part
    return whole


def plan(gguf: Path, contents: reader.Contents, config) -> list[Placement]:
    """Each tensor of the file with the model parameter it fills, checked both ways: every file tensor has a
    place (tensors llama.cpp derives from the config, like Llama 3's rope factors, a vision tower, and the layers
    of a draft block past the model's own are left out), every parameter a tensor, of the same shape; else
    IncompleteModel, in one sentence."""
    cfg = config.to_dict()
    arch = architectures.REGISTRY[cfg["model_type"]].variant(cfg)
    shapes = _parameter_shapes(config)
    by_gguf = {}  # GGUF name → (HF name, the rows (or columns) of it the file's tensor holds, whether columns, shape)
    for hf_name, shape in shapes.items():
        for part, rows, columns, taken in architectures.pieces(arch, hf_name, shape):
            gguf_name = arch.gguf_name(part, cfg)
            if gguf_name is not None:
                by_gguf[gguf_name] = (hf_name, rows, columns, taken)
    derived = {name for name, _ in arch.extra_tensors(cfg)}
    text = [t for t in contents.tensors if not t.name.startswith(VISION) and not _draft(t.name, contents, cfg)]
    placements, dtype = [], folder_dtype(text)
    for info in text:
        if info.name in derived:
            continue
        if info.name not in by_gguf:
            raise IncompleteModel(f"{gguf}: holds a tensor {info.name} that a {cfg['model_type']} model of this "
                                  "config has no place for; the file may be damaged or of a variant we do not read.")
        hf_name, rows, columns, taken = by_gguf.pop(info.name)
        wanted = arch.gguf_shape(info.name, taken, cfg)  # as the file holds it (a conv kernel: 2-D; a part: its rows)
        if tuple(info.shape) != wanted:
            raise IncompleteModel(f"{gguf}: tensor {info.name} is {list(info.shape)} where the config asks for "
                                  f"{list(wanted)}; the file may be damaged.")
        placements.append(Placement(info, hf_name, dtype, rows, None if rows is None else shapes[hf_name], columns))
    if by_gguf:
        missing = sorted(by_gguf)
        raise IncompleteModel(f"{gguf}: lacks {len(missing)} tensor(s) the model needs, e.g. {missing[0]}; the file "
                              "may be cut short or damaged: download it again.")
    first = {}  # the parts of one model tensor side by side (in the file's order otherwise), so one shard holds them
    for i, p in enumerate(placements):
        first.setdefault(p.hf_name, i)
    return sorted(placements, key=lambda p: first[p.hf_name])


def _draft(name: str, contents: reader.Contents, cfg: dict) -> bool:
    """Whether a tensor is of the draft block (multi-token prediction, nextn_predict_layers: Qwen 3.5's) that
    llama.cpp's converter keeps as layers past the model's own, for speculative decoding; the model has no place
    for it, and tuning does not use it."""
    drafts = contents.metadata.get(f"{contents.metadata.get('general.architecture')}.nextn_predict_layers")
    layer = architectures.layer_of(name)
    return bool(drafts) and layer is not None and layer >= cfg["num_hidden_layers"]


def vision_tensors(contents: reader.Contents) -> int:
    """How many of the file's tensors are a vision tower and its projector, which the import leaves out."""
    return sum(t.name.startswith(VISION) for t in contents.tensors)


def read(gguf: Path) -> reader.Contents:
    """The file's metadata and tensor table, checked to be whole (a GGUF header that parses, tensors of types
    we know, every tensor's bytes present) before anything else reads it; else IncompleteModel, in one
    sentence. For the first part of a model split into parts (core/gguf_parts.py), every part's tensors."""
    contents = _read_one(gguf)
    count = int(contents.metadata.get("split.count") or 1)
    if count <= 1:
        return contents
    files = gguf_parts.parts(gguf, count)
    gguf_parts.check(gguf, contents.metadata, 1, count)
    for no, part in enumerate(files[1:], start=2):
        more = _read_one(part)
        gguf_parts.check(part, more.metadata, no, count)
        contents.tensors += more.tensors
        contents.located.update({t.name: (part, more.data_start) for t in more.tensors})
    said = contents.metadata.get("split.tensors.count")
    if said is not None and said != len(contents.tensors):
        raise IncompleteModel(f"{gguf}: its {count} parts hold {len(contents.tensors)} tensors where the first says "
                              f"{said}; download the parts again.")
    return contents


def _read_one(gguf: Path) -> reader.Contents:
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise IncompleteModel(f"{gguf}: is not a GGUF file (it does not begin with 'GGUF'); check that it is the "
                                  "model file itself, not a web page or a partial download.")
    try:
        contents = reader.read(gguf)
    except Exception as e:  # noqa: BLE001  any damage in the header: one sentence, not a traceback
        raise IncompleteModel(f"{gguf}: its header is damaged ({type(e).__name__}: {e}); download it again.") from None
    for t in contents.tensors:
        if _type_name(t.ggml_type) is None:
            raise IncompleteModel(f"{gguf}: tensor {t.name} is of GGML type {t.ggml_type}, which this version of gguf "
                                  "does not know; use a file quantized as Q4_K_M, Q8_0 or F16.")
    end = contents.data_start + max((t.offset + _file_bytes(t) for t in contents.tensors), default=0)
    if gguf.stat().st_size < end:
        raise IncompleteModel(f"{gguf}: is cut short ({gguf.stat().st_size:,} bytes of the {end:,} its tensor table "
                              "describes); download it again.")
    return contents


def _type_name(ggml_type: int) -> str | None:
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return None


def _file_bytes(info: reader.TensorInfo) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(info.ggml_type)]
    return math.prod(info.shape) // block * size


def folder_dtype(tensors: list[reader.TensorInfo]) -> str:
    """The one dtype the folder's tensors are stored in (see the module's docstring for why one)."""
    from gguf import GGMLQuantizationType as T

    kinds = {T(t.ggml_type) for t in tensors} - {T.F32}
    return "float32" if not kinds else "bfloat16" if kinds == {T.BF16} else "float16"


def _parameter_shapes(config) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model this config builds, with its shape, without allocating it (meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _tensor(gguf: Path, contents: reader.Contents, p: Placement, arch, cfg: dict):
    """One tensor from the file: de-quantized, in Hugging Face's layout, in its stored dtype (float32 where
    float16 cannot hold a value the file holds).

    De-quantized CHUNK_VALUES at a time: gguf's decoders make several temporaries the size of their input,
    which for an 8B model's embedding (525M values) would be gigabytes each. A tensor its architecture
    leaves as it is (all but Llama's Q/K and Gemma's norms) goes a chunk at a time straight into its stored
    dtype; one it rearranges is assembled in float32 first, as `untransform` works on whole tensors."""
    import torch

    info = p.info
    stored = getattr(torch, p.dtype)
    if arch.untransforms(info.name, cfg):
        values = np.empty((_rows(info), info.shape[-1]), np.float32)
        for rows, chunk in _chunks(gguf, contents, info):
            values[rows] = chunk
        values = torch.from_numpy(np.require(arch.untransform(info.name, values.reshape(info.shape), cfg),
                                             np.float32, ["C", "W"]))
        out = values.to(stored)
        return out if torch.isfinite(out).all() or not torch.isfinite(values).all() else values
    out = torch.empty((_rows(info), info.shape[-1]), dtype=stored)
    for rows, chunk in _chunks(gguf, contents, info):
        part = torch.from_numpy(chunk)
        out[rows] = part
        if stored is not torch.float32 and not torch.isfinite(out[rows]).all() and torch.isfinite(part).all():
            return _tensor(gguf, contents, Placement(info, p.hf_name, "float32"), arch, cfg)  # past float16's range
    return out.reshape(info.shape)


def _rows(info: reader.TensorInfo) -> int:
    """The tensor's rows of its last dimension (1 for a vector)."""
    return math.prod(info.shape[:-1]) if len(info.shape) > 1 else 1


def _chunks(gguf: Path, contents: reader.Contents, info: reader.TensorInfo):
    """(row slice, float32 rows) over a tensor, viewed as rows of its last dimension, CHUNK_VALUES at a time."""
    from gguf import GGMLQuantizationType
    from gguf import quants as gguf_quants

    kind = GGMLQuantizationType(info.ggml_type)
    rows = _rows(info)
    raw = reader.tensor_bytes(gguf, contents, info, _file_bytes(info)).reshape(rows, -1)
    step = max(1, CHUNK_VALUES // info.shape[-1])
    for start in range(0, rows, step):
        chunk = gguf_quants.dequantize(raw[start:start + step], kind)
        yield slice(start, start + step), np.require(chunk, np.float32, ["C", "W"])


def _shards(placements: list[Placement]) -> list[list[Placement]]:
    """File order, cut where a shard would pass SHARD_BYTES (a tensor larger than that gets a shard alone)."""
    shards: list[list[Placement]] = [[]]
    size = 0
    for p in placements:
        if shards[-1] and size + p.nbytes > SHARD_BYTES and shards[-1][-1].hf_name != p.hf_name:  # parts stay together
            shards.append([])
            size = 0
        shards[-1].append(p)
        size += p.nbytes
    return shards


def _save(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
