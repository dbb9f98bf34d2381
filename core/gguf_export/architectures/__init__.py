"""GGUF architectures: one file each, registered here by the HF `model_type` they read (STYLE §9).

An architecture says what llama.cpp needs that a Hugging Face folder spells differently:

- `gguf_arch`: llama.cpp's architecture, which also picks gguf's HF → GGUF tensor-name map;
- `metadata(cfg, w)`: the hyperparameters, written through GGUFWriter's typed `add_*` calls, so the
  key names and value types are gguf's own;
- `transform(name, array, cfg)`: what a tensor needs on its way (Llama's Q/K row order, Gemma's norm + 1),
  and `untransform`, its inverse, for reading a file back without transformers; `gguf_shape`, the shape
  `transform` gives where it is another, and `f32_names`, tensors llama.cpp reads only as float32;
- `extra_tensors(cfg)`: tensors llama.cpp reads that HF computes at run time (Llama 3's rope factors), and
  `config_from_extra`, the settings such tensors stand for, for importing a file; `config_from_keys`, what a
  file's keys say that transformers' mapping of them misses;
- `config_from_tensors(names, cfg)`: what a file's tensor names say of the config that no key does (Gemma 4's
  full layers without a value projection), for importing it with our `config`;
- `check(cfg)`: a sentence for settings llama.cpp cannot express, before anything is written;
- `config(meta)`: the inverse of `metadata`, a file's hyperparameters as config fields, for importing a
  GGUF of an architecture transformers' GGUF reader does not know (`transformers_reads = False`: it has no
  mapping of the file's keys to a config, so core/gguf_import.py reads them with ours).
- `written_config(cfg)` and `parts(hf_name, rows)`: for a checkpoint that another architecture writes once its
  tensors are renamed and split by rows (Granite 4.0's dense models: granitemoehybrid.py; a mixture of experts'
  fused gate_up_proj, split by the rows of each expert's matrix: qwen3moe.py), that architecture's
  config and the tensors, by its HF names, each HF tensor becomes. The HF tensors come in at two places only,
  writer.plan (the merged model) and lora_adapter (the adapter), and both apply these first; past them a tensor is
  its written name and the rows of its source it takes (writer.TensorPlan), so verification reads the file back
  into the model's own class and compares its own answers.

`cfg` is the model's config as a dict (`config.to_dict()`). Facts (tensor names, keys, the Q/K row order)
follow llama.cpp's convert_hf_to_gguf.py; the code is ours.
"""

from __future__ import annotations

import functools
import re
from typing import ClassVar

import numpy as np
from gguf import GGUFWriter, MODEL_ARCH, MODEL_ARCH_NAMES, RopeScalingType, get_tensor_name_map

from core.errors import BadArgument

SKIPPED = ("rotary_emb.inv_freq",)  # buffers some checkpoints carry; llama.cpp computes them


class Architecture:
    model_types: ClassVar[tuple[str, ...]]
    gguf_arch: ClassVar[MODEL_ARCH]
    transformers_reads: ClassVar[bool] = True  # whether transformers' GGUF reader knows this architecture
    # llama.cpp's tokenizer model of its own for this architecture's SentencePiece-style vocabulary, and the tokens
    # left visible in the text it generates (core/gguf_export/vocab.py `_own_model`); None: "llama", as for the others
    tokenizer_model: ClassVar[str | None] = None
    visible_tokens: ClassVar[tuple[str, ...]] = ()
    # a mixture of experts: `expert_shapes(cfg)`, each 3-D expert weight's name and its experts' (out, in), by which
    # the LoRA file tells peft's adapter pairs on them apart (lora_adapter.py); None where it writes none
    expert_shapes = None
    # HF module names whose weight llama.cpp multiplies without adding a LoRA's update (ggml_mul_mat, not
    # build_lora_mm): an adapter on one gets no LoRA file (lora_adapter.unwritable), the merged GGUF carries it
    lora_unread: ClassVar[tuple[str, ...]] = ()

    def lora_output_scale(self, gguf_name: str, cfg: dict, base_tensor) -> np.ndarray | None:
        """Per expert, a factor by which llama.cpp multiplies a stacked weight's output before it adds a LoRA's
        (build_lora_mm_id), where the model scales the whole expert: the LoRA file's B takes it too
        (lora_adapter.py). `base_tensor(hf_name)` reads one of the model's tensors as float32; None: no such factor."""
        return None

    @property
    def name(self) -> str:
        """llama.cpp's name, the value of general.architecture ("llama", "qwen2", ...)."""
        return MODEL_ARCH_NAMES[self.gguf_arch]

    # --- tensors -------------------------------------------------------------------------------------
    def gguf_name(self, hf_name: str, cfg: dict) -> str | None:
        """The GGUF name of an HF tensor, or None for one llama.cpp does not read (tied lm_head, buffers)."""
        if hf_name.endswith(SKIPPED) or (hf_name == "lm_head.weight" and tied(cfg)):
            return None
        return _name_map(self.gguf_arch, cfg["num_hidden_layers"]).get_name(hf_name, try_suffixes=(".weight", ".bias"))

    def transform(self, gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
        return array

    def gguf_shape(self, gguf_name: str, shape: tuple[int, ...], cfg: dict) -> tuple[int, ...]:
        """The tensor's shape in the file for its HF `shape` (numpy order): the same unless `transform` reshapes it
        (Qwen 3.5's conv kernel, [channels, 1, width] in HF, a matrix in llama.cpp)."""
        return shape

    f32_names: ClassVar[tuple[str, ...]] = ()  # GGUF name endings llama.cpp reads only as float32, whatever the pick

    def lora_transform(self, gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
        """`transform` as a LoRA pair's factor takes it (lora_adapter.adapter_tensors: B for a row transform, A for a
        column one): `transform` itself, but where that only turns a matrix stored [in, out] into llama.cpp's
        [out, in] (gpt-oss's experts), which peft's pairs already are."""
        return self.transform(gguf_name, array, cfg)

    def untransform(self, gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
        """The inverse of transform: a tensor read from GGUF back in HF's layout (for our own read-back and
        core/gguf_import.py); `array` itself where `untransforms` says the tensor needs nothing."""
        return array

    def untransforms(self, gguf_name: str, cfg: dict) -> bool:
        """Whether `untransform` changes this tensor: the others can be read a chunk at a time."""
        return False

    def transforms_columns(self, gguf_name: str, cfg: dict) -> bool:
        """Whether `transform` reorders this matrix's columns (its input) rather than its rows: a LoRA file then
        takes the transform on A, whose columns are the weight's, instead of on B (core/gguf_export/lora_adapter.py)."""
        return False

    def extra_tensors(self, cfg: dict) -> list[tuple[str, np.ndarray]]:
        return []

    extra_names: ClassVar[tuple[str, ...]] = ()  # the names extra_tensors may give

    def config_from_keys(self, meta: dict, cfg: dict) -> dict:
        """Config fields from keys transformers' GGUF mapping does not read, for importing a file whose config it
        made (`cfg`); {} where nothing differs. Here the head size a file states (it reads Qwen3's
        attention.key_length for none, so its class default, 128, stood) and the rope scaling (it reads
        rope.scaling.* for gpt-oss alone: Gemma 3's linear ×8 on its global layers was lost)."""
        fields = {}
        stated = meta.get(f"{self.name}.attention.key_length")
        derived = cfg["hidden_size"] // cfg["num_attention_heads"]
        if isinstance(stated, int) and (cfg.get("head_dim") or derived) != stated:
            fields["head_dim"] = stated
        scaling = self.rope_scaling(meta)
        if scaling and rope(cfg).get("rope_type", "default") == "default":
            params = cfg.get("rope_parameters") or {}
            if "full_attention" in params:  # per layer type (Gemma 3): GGUF's rope keys are the full layers'
                params = {**params, "full_attention": {**params["full_attention"], **scaling}}
            fields["rope_parameters"] = params if "full_attention" in params else {**params, **scaling}
        return fields

    def rope_scaling(self, meta: dict) -> dict:
        """The rope scaling a file's keys state, in rope_parameters' terms ({} for none): the inverse of the
        scaling `metadata` writes."""
        kind = meta.get(f"{self.name}.rope.scaling.type")
        if kind not in ("linear", "yarn"):
            return {}
        scaling = {"rope_type": kind, "factor": _short(meta[f"{self.name}.rope.scaling.factor"])}
        if kind == "yarn":
            scaling["original_max_position_embeddings"] = meta.get(f"{self.name}.rope.scaling.original_context_length")
        return scaling

    def config_from_extra(self, extra: dict[str, np.ndarray], cfg: dict, meta: dict) -> dict | None:
        """The inverse of `extra_tensors`, for importing a file: the config fields (`rope_parameters`, ...) its
        extra tensors (`extra`: name → values, those of `extra_names` it holds) stand for, given the config read
        so far and the file's metadata; None where no setting we can write gives them."""
        return None

    def config_from_tensors(self, names: set[str], cfg: dict) -> dict:
        """Config fields the file's tensor names (`names`) give where no key does, for a config our `config` read
        (`cfg`); {} where nothing differs."""
        return {}

    # --- a checkpoint written as another architecture --------------------------------------------------------
    def variant(self, cfg: dict) -> "Architecture":
        """The architecture that writes a model of this config: itself, but where one model type is written as two
        llama.cpp architectures (Granite 4.0: granite, or granitehybrid where a layer is Mamba), the one for it
        (registered with `register_variant`, so a file of its name finds it)."""
        return self

    def written_config(self, cfg: dict) -> dict:
        """The config the rest of the export reads (`metadata`, `transform`, `gguf_name`, ...): `cfg` itself, but for
        a model type whose checkpoints another architecture writes once renamed (granitemoehybrid.py), whose
        config it turns into that one's. `check` takes the model's own config, before this."""
        return cfg

    def split_columns(self, hf_name: str) -> bool:
        """Whether `parts` splits this tensor by the columns of its matrices (the last axis) rather than by their rows:
        gpt-oss's fused gate_up_proj, stored [in, out] with the gate's and the up's outputs alternating."""
        return False

    def parts(self, hf_name: str, rows: int) -> list[tuple[str, slice | None]]:
        """The tensors an HF tensor of `rows` rows becomes, by the names `gguf_name` reads, each with the rows of it
        that it takes (None: all of them): itself, whole, but where `written_config` renames or a fused weight is
        split. For a stack of matrices ([experts, rows, cols]: a mixture of experts' fused gate_up_proj) `rows` are
        each matrix's, and a part takes those rows of every one (writer.TensorPlan.of)."""
        return [(hf_name, None)]

    # --- metadata ------------------------------------------------------------------------------------
    def check(self, cfg: dict) -> None:
        """Raise BadArgument (one sentence) for a setting this architecture cannot carry into GGUF."""
        kind = rope(cfg).get("rope_type", "default")
        if kind not in self.rope_types:
            raise BadArgument(f"This {cfg['model_type']} model uses '{kind}' rope scaling, which GGUF export does not "
                              f"carry yet (it handles {', '.join(self.rope_types)}); export merged safetensors instead.")

    rope_types: ClassVar[tuple[str, ...]] = ("default", "linear", "yarn")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        """The hyperparameters every decoder here shares; subclasses add their own after calling this."""
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_block_count(cfg["num_hidden_layers"])
        if cfg.get("intermediate_size") is not None:  # a model of experts alone has no dense width (qwen35moe.py)
            w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(cfg["num_attention_heads"])
        w.add_head_count_kv(kv_heads(cfg))
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_rope_freq_base(float(rope(cfg)["rope_theta"]))
        w.add_vocab_size(cfg["vocab_size"])
        if cfg.get("head_dim"):
            w.add_key_length(cfg["head_dim"])
            w.add_value_length(cfg["head_dim"])
        scaling = rope(cfg)
        if scaling.get("rope_type") == "linear":
            w.add_rope_scaling_type(RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(scaling["factor"]))
        elif scaling.get("rope_type") == "yarn":
            w.add_rope_scaling_type(RopeScalingType.YARN)
            w.add_rope_scaling_factor(float(scaling["factor"]))
            w.add_rope_scaling_orig_ctx_len(int(scaling.get("original_max_position_embeddings")
                                                or cfg["max_position_embeddings"]))

    def config(self, meta: dict) -> dict:
        """The inverse of `metadata`: the config fields a file's metadata (key → value, as our reader gives it)
        spells, `model_type` and the token ids included. Floats come back as the shortest decimal that gives
        the same float32 (GGUF stores float32: 1e-06, not 9.99999997e-07)."""
        def key(name: str, default=None):
            return meta.get(f"{self.name}.{name}", default)

        theta = _short(key("rope.freq_base", 10000.0))
        rope_parameters = {"rope_type": "default", "rope_theta": theta, **self.rope_scaling(meta)}
        cfg = {field: key(name) for name, field in CONFIG_KEYS.items() if key(name) is not None}
        cfg.update(model_type=self.model_types[0], rope_parameters=rope_parameters,
                   rms_norm_eps=_short(key("attention.layer_norm_rms_epsilon", 1e-5)))
        cfg.setdefault("vocab_size", len(meta.get("tokenizer.ggml.tokens", ())))
        for field in ("bos_token_id", "eos_token_id", "pad_token_id"):
            stored = meta.get("tokenizer.ggml." + field.replace("pad_", "padding_"))
            if stored is not None:
                cfg[field] = stored
        return cfg


CONFIG_KEYS = {  # llama.cpp's key (after "ARCH.") → the config field it holds, the same in every decoder here
    "context_length": "max_position_embeddings", "embedding_length": "hidden_size", "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size", "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads", "attention.key_length": "head_dim", "vocab_size": "vocab_size"}


def _short(value: float) -> float:
    """The shortest decimal that is the same float32 as `value`."""
    return float(str(np.float32(value)))


@functools.lru_cache(maxsize=8)
def _name_map(arch: MODEL_ARCH, n_layers: int):
    return get_tensor_name_map(arch, n_layers)  # builds every name of every layer: once per model, not per tensor


def tied(cfg: dict) -> bool:
    return bool(cfg.get("tie_word_embeddings", False))


def kv_heads(cfg: dict) -> int:
    return cfg.get("num_key_value_heads") or cfg["num_attention_heads"]


def head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def rope(cfg: dict) -> dict:
    """The rope settings as one dict, however the config spells them: transformers 5 keeps them in
    `rope_parameters` (per layer type for Gemma 3, whose global layers are the ones GGUF describes),
    older configs in `rope_theta` + `rope_scaling`."""
    params = cfg.get("rope_parameters") or {}
    params = params.get("full_attention", params)
    merged = {"rope_theta": cfg.get("rope_theta") or 10000.0, **(cfg.get("rope_scaling") or {}), **params}
    if "type" in merged and "rope_type" not in merged:
        merged["rope_type"] = merged["type"]
    return merged


def matrix_rows(shape) -> int:
    """The rows of a tensor's matrices (of each, for a stack of them: [experts, rows, cols]), the length of a vector,
    0 for a scalar: what Architecture.parts splits."""
    return shape[-2] if len(shape) >= 2 else (shape[0] if len(shape) else 0)


def part_shape(shape, rows: slice | None, columns: bool = False) -> tuple[int, ...]:
    """The shape of the part of a tensor of `shape` that takes `rows` of each of its matrices (None: all), or those
    columns where `columns`."""
    if rows is None:
        return tuple(shape)
    if columns:
        return (*shape[:-1], len(range(shape[-1])[rows]))
    return (*shape[:-2], len(range(shape[-2])[rows]), shape[-1])


def part_index(rows: slice, columns: bool = False) -> tuple:
    """The index of a part in its source tensor: `rows` of each matrix, or those columns."""
    return (..., rows) if columns else (..., rows, slice(None))


def pieces(arch: Architecture, hf_name: str, shape) -> list[tuple[str, slice | None, bool, tuple[int, ...]]]:
    """What an HF tensor of `shape` becomes (Architecture.parts): each part's name, the rows of each matrix it takes
    (None: all) or, where Architecture.split_columns says so, the columns, whether they are columns, and its shape."""
    columns = arch.split_columns(hf_name)
    return [(part, rows, columns, part_shape(shape, rows, columns))
            for part, rows in arch.parts(hf_name, shape[-1] if columns else matrix_rows(shape))]


def layer_of(gguf_name: str) -> int | None:
    m = re.match(r"blk\.(\d+)\.", gguf_name)
    return int(m.group(1)) if m else None


REGISTRY: dict[str, Architecture] = {}


def register(cls: type[Architecture]) -> type[Architecture]:
    for model_type in cls.model_types:
        if model_type in REGISTRY:
            raise ValueError(f"model_type {model_type!r} registered twice")
        REGISTRY[model_type] = cls()
    return cls


VARIANTS: list[Architecture] = []  # architectures a registered one gives for some configs (`variant`)


def register_variant(cls: type[Architecture]) -> type[Architecture]:
    VARIANTS.append(cls())
    return cls


def by_gguf_name(name: str) -> Architecture | None:
    """The architecture whose files say general.architecture = `name` (the first registered: "llama" is Llama's,
    not Mistral's; then the variants), or None."""
    return next((a for a in [*REGISTRY.values(), *VARIANTS] if a.name == name), None)


def for_config(cfg: dict) -> Architecture:
    """The architecture that writes a model of this config (`get`, then its `variant`)."""
    return get(cfg["model_type"]).variant(cfg)


def get(model_type: str) -> Architecture:
    if model_type not in REGISTRY:
        raise BadArgument(f"GGUF export does not support the '{model_type}' architecture yet (it supports "
                          f"{', '.join(sorted(REGISTRY))}); export merged safetensors instead.")
    return REGISTRY[model_type]


# Each registers itself:
from core.gguf_export.architectures import (  # noqa: E402,F401,I001
    llama, qwen2, qwen3, gemma2, gemma3, phi3, smollm3, granite, olmo2, qwen35, gemma4, lfm2,
    granitemoehybrid,  # after granite: a file whose architecture is "granite" is Granite 3's (by_gguf_name)
    qwen3moe, qwen35moe, gpt_oss,
    mixtral,  # after llama: a file whose architecture is "llama" is Llama's, whose `config` gives Mixtral's for experts
    qwen2moe, olmoe)
