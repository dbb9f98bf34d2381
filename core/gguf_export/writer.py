"""Write a model as one GGUF file, a tensor at a time.

First a plan: every tensor's GGUF name, shape and type, and the metadata, all decided before a byte is
written (verify.py checks the file against the same plan). Then the file: the header, metadata and
tensor table go out first (gguf's GGUFWriter can write them before any data), and each tensor is
converted, quantized, written and dropped in turn, so memory holds the source model plus one converted
tensor, never a second copy of the model.

The file is written under a temporary name beside the target and renamed at the end; a failure, a
cancel or a full disk leaves nothing behind. Disk space is checked against the planned size first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_VERSION, GGUFWriter

from core import atomic
from core.errors import DiskFull
from core.gguf_export import quants
from core.gguf_export.architectures import Architecture, part_index, pieces
from core.gguf_export.tensor_types import Pick, stored_type, wanted_type
from core.gguf_export.vocab import Vocab

ALIGNMENT = 32  # GGUF's default data alignment
HEADROOM = 16 << 20  # bytes kept free beyond the estimate (file system metadata, the estimate's slack)


@dataclass(frozen=True)
class TensorPlan:
    name: str  # GGUF name
    source: str | None  # the HF tensor it comes from (None: made by the architecture, e.g. rope factors)
    shape: tuple[int, ...]  # numpy order, [rows, cols] for matrices
    type: str  # a quants.TYPES name
    wanted: str  # the type the pick asked for; `type` differs where the rows did not fit it (tensor_types.fallbacks)
    # the rows of each of `source`'s matrices it holds, where it is part of it (Architecture.parts); None: all
    rows: slice | None = None
    # `rows` are columns, the last axis: a stack whose matrices are stored [in, out] (gpt-oss's experts: split_columns)
    columns: bool = False

    def of(self, tensor):
        """Its part of `tensor`, its source's values: the rows of a matrix, or of each matrix of a stack of them (a
        mixture of experts' fused gate_up_proj), or their columns; a view of a torch tensor: writing to it writes
        there."""
        return tensor if self.rows is None else tensor[part_index(self.rows, self.columns)]

    @property
    def nbytes(self) -> int:
        q = quants.get(self.type)
        rows = int(np.prod(self.shape[:-1])) if len(self.shape) > 1 else 1
        return rows * (self.shape[-1] // q.block_size) * q.type_size


@dataclass
class Plan:
    arch: Architecture
    pick: Pick
    cfg: dict
    name: str
    vocab: Vocab
    tensors: list[TensorPlan]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    kv: dict = field(default_factory=dict)  # key → gguf GGUFValue, exactly what the file's metadata will hold

    def size(self) -> int:
        """The file's size, within a few kilobytes: tensor data with alignment, plus the metadata."""
        data = sum(-(-t.nbytes // ALIGNMENT) * ALIGNMENT for t in self.tensors)
        table = sum(len(t.name) + 48 for t in self.tensors)
        text = sum(len(s.encode("utf-8")) + 8 for s in self.vocab.tokens + (self.vocab.merges or []))
        return data + table + text + 12 * len(self.vocab.tokens) + len(self.vocab.chat_template or "") + 65536


def plan(arch: Architecture, cfg: dict, shapes: dict[str, tuple[int, ...]], vocab: Vocab, pick: Pick,
         name: str) -> Plan:
    """Every tensor's name, shape and type, and the metadata, for a model with these HF tensor shapes (`cfg`: its
    config; the plan holds the one the architecture writes, Architecture.written_config)."""
    arch.check(cfg)
    cfg = arch.written_config(cfg)
    named, unmapped = [], []
    for hf_name, shape in shapes.items():
        for part, rows, columns, taken in pieces(arch, hf_name, shape):
            gguf_name = arch.gguf_name(part, cfg)
            if gguf_name is not None:
                named.append((gguf_name, hf_name, arch.gguf_shape(gguf_name, taken, cfg), rows, columns))
            elif not hf_name.endswith(".inv_freq") and hf_name != "lm_head.weight":
                unmapped.append(hf_name)
    if unmapped:
        raise ValueError(f"no GGUF name for {', '.join(unmapped[:5])} ({arch.name})")  # a bug in our tables
    # As llama.cpp decides it: the embedding doubles as the output head when there is no output.weight.
    head_is_embedding = all(n != "output.weight" for n, *_ in named)
    n_layers = cfg["num_hidden_layers"]
    wanted = {n: "f32" if n.endswith(arch.f32_names) else wanted_type(pick, n, shape, n_layers, head_is_embedding)
              for n, _, shape, *_ in named}
    tensors = [TensorPlan(n, src, shape, stored_type(wanted[n], shape), wanted[n], rows, columns)
               for n, src, shape, rows, columns in named]
    extra = dict(arch.extra_tensors(cfg))
    tensors += [TensorPlan(n, None, a.shape, "f32", "f32") for n, a in extra.items()]
    p = Plan(arch, pick, cfg, name, vocab, tensors, extra)
    dry = GGUFWriter(None, arch.name)
    _metadata(dry, p)
    p.kv = dict(dry.kv_data[0])
    return p


def _metadata(w: GGUFWriter, p: Plan) -> None:
    w.add_type("model")
    w.add_name(p.name)
    p.arch.metadata(p.cfg, w)
    w.add_file_type(int(p.pick.file_type))
    w.add_quantization_version(GGML_QUANT_VERSION)
    p.vocab.write(w)


def name_lineage(w: GGUFWriter, base, data, tags: list[str]) -> None:
    """What a fine-tune was made from, in the keys llama.cpp's converter writes for one (core.lineage.Origin): its
    base model (name, organization, Hub address), the base's licence, its dataset, and `tags`; unknown parts are
    left out. For the model file (add_lineage) and the LoRA file (lora_adapter.write), which needs that base."""
    if base.name:
        w.add_base_model_count(1)
        w.add_base_model_name(0, base.name)
        if base.repo:
            w.add_base_model_organization(0, base.organization)
            w.add_base_model_repo_url(0, base.url)
    if base.license:
        w.add_license(base.license)
    if data.name:
        w.add_dataset_count(1)
        w.add_dataset_name(0, data.name)
        if data.repo:
            w.add_dataset_repo_url(0, data.url)
    w.add_tags(tags)


def add_lineage(p: Plan, base, data, tags: list[str]) -> None:
    """name_lineage in the plan's metadata, which verify.py reads back with the rest, beside the other general.*
    keys, ahead of the vocabulary: a reader that stops where it starts (core.lineage) finds them."""
    dry = GGUFWriter(None, p.arch.name)
    name_lineage(dry, base, data, tags)
    added = {k: v for k, v in dry.kv_data[0].items() if k != "general.architecture"}
    general = {k: v for k, v in p.kv.items() if k.startswith("general.")}
    p.kv = general | added | {k: v for k, v in p.kv.items() if k not in general}


def check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + HEADROOM:
        raise DiskFull(f"Not enough disk space for the GGUF file: it needs about {_gb(needed + HEADROOM)} in "
                       f"{folder}, which has {_gb(free)} free; free some space or export to another disk.")


def write(p: Plan, tensors, target: Path, progress) -> Path:
    """Write the planned file at `target`; `tensors` maps HF names to torch tensors (a state dict)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    check_space(target.parent, p.size())
    with atomic.temp_file(target) as tmp:
        w = GGUFWriter(tmp, p.arch.name)
        try:
            w.kv_data[0].update(p.kv)
            for t in p.tensors:
                w.add_tensor_info(t.name, _byte_shape(t), np.dtype(np.uint8), t.nbytes,
                                  raw_dtype=quants.get(t.type).ggml)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for i, t in enumerate(p.tensors):
                progress.update(i / len(p.tensors), f"Writing {target.name}")  # one text: logs print per tenth
                w.write_tensor_data(encode(p, t, tensors))
        finally:
            w.close()
    progress.update(1.0, f"Wrote {target.name}")
    return target


def encode(p: Plan, t: TensorPlan, tensors) -> np.ndarray:
    """One tensor as it goes into the file: converted to float32, transformed, quantized."""
    if t.source is None:
        array = p.extra[t.name]
    else:
        array = t.of(tensors[t.source]).detach().float().cpu().numpy()
        array = p.arch.transform(t.name, array, p.cfg)
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1, t.shape[-1])
    data = quants.get(t.type).quantize(flat)
    if data.nbytes != t.nbytes:  # the plan and the quantizer disagree: a bug, never a silent bad file
        raise ValueError(f"{t.name}: {data.nbytes} bytes quantized as {t.type}, {t.nbytes} planned")
    return data


def _byte_shape(t: TensorPlan) -> tuple[int, ...]:
    q = quants.get(t.type)
    return (*t.shape[:-1], t.shape[-1] // q.block_size * q.type_size)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"
