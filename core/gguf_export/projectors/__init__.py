"""Vision projectors: llama.cpp's `mmproj` file, the vision tower a vision-language model sees with, written beside the
exported language model. One file per projector type, registered here by the checkpoint's HF `model_type` (STYLE §9).

llama.cpp keeps a vision tower out of the language model's GGUF, in a file of its own (`--mmproj FILE` for
llama-server and llama-mtmd-cli; LM Studio picks up an `mmproj-*.gguf` beside the model): without one an exported
vision-language model has lost its base model's sight. The runs train the language model (a LoRA's targets are its
layers), so the tower is the base model's; a whole-model run's result holds it too where it saved the whole model,
and then that one is read. A base converted from a GGUF holds no tower (core/gguf_import.py reads the language
model); where its GGUF had a projector file beside it (LM Studio's layout), that file goes into the export as it is.

A projector says what llama.cpp's loader (tools/mtmd/clip.cpp) needs that the checkpoint spells otherwise:

- `gguf_name(name)`: the GGUF name of a tower or projector tensor, by its name under `vision_tower.`,
  `multi_modal_projector.`, Qwen's `visual.` or Gemma 4's `embed_vision.` (the checkpoint's layout taken off:
  `vision_name`); None for one llama.cpp does not read; by default from the class's tables (`others`, `layer`,
  `layer_parts`, `kinds`), which `required` reads too;
- `required(cfg)`: the names its loader refuses a file without, so a checkpoint lacking one gets a sentence, not a
  file llama.cpp cannot open;
- `check(cfg)`: why a setting of the model keeps llama.cpp from reading it, or None;
- `transform(gguf_name, array)`: what a tensor needs on its way (Gemma 3's soft-embedding norm + 1), and `shape`
  the shape it comes out in where that changes (Gemma 4's patch matrix read as a convolution's kernel);
- `splits`: a tensor llama.cpp reads as several, cut along one axis (Qwen's patch convolution over two frames, read
  as one 2-D convolution per frame);
- `f32_names`: matrices kept in float32 where the rest are float16 (vectors are float32 always, as llama.cpp's
  converter writes them: its CPU kernels for norms and biases take float32);
- `metadata(cfg, preprocessor, w)`: the `clip.*` keys, through GGUFWriter's typed `add_*` calls; it returns a
  sentence for what it had to assume, or None;
- `configured(cfg)`: the projector for one model, where its transform needs a setting (Pixtral's heads);
- `rows(cfg, model_path, files)`: rows the file takes from the language model's matrices (Pixtral's [IMG_BREAK]
  embedding, which llama.cpp adds after each row of the image's tokens), or why they cannot be found.

Facts (key and tensor names, types) follow llama.cpp's loader and converter; the code is ours.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
from gguf import GGMLQuantizationType, GGUFType, GGUFWriter, LlamaFileType, MODEL_ARCH, MODEL_ARCH_NAMES

from core import atomic, results, strategies

# A checkpoint's prefixes of its tower and projector (llava's layout and transformers 5's, the tower's own
# `vision_model.` level kept or not), longest first, and the name each becomes.
PREFIXES = (("model.vision_tower.vision_model.", "vision_tower."), ("vision_tower.vision_model.", "vision_tower."),
            ("model.vision_tower.", "vision_tower."), ("vision_tower.", "vision_tower."),
            ("model.multi_modal_projector.", "multi_modal_projector."),
            ("multi_modal_projector.", "multi_modal_projector."), ("model.visual.", "visual."),
            ("visual.", "visual."), ("model.embed_vision.", "embed_vision."), ("embed_vision.", "embed_vision."))
DEFAULT_NORMALIZATION = ([0.5] * 3, [0.5] * 3, "mean and std 0.5")
ARCH = MODEL_ARCH_NAMES[MODEL_ARCH.MMPROJ]  # "clip": general.architecture of every projector file
TYPES = {"f16": (np.float16, GGMLQuantizationType.F16), "f32": (np.float32, GGMLQuantizationType.F32)}
WHY = ("llama.cpp keeps a vision tower in a file of its own: give it with --mmproj (llama-server, llama-mtmd-cli); "
       "LM Studio uses an mmproj-*.gguf beside the model by itself")


class Projector:
    model_types: ClassVar[tuple[str, ...]]
    projector_type: ClassVar[str]  # clip.projector_type
    f32_names: ClassVar[tuple[str, ...]] = ()
    # GGUF name (as gguf_name gives it) → (the names of its pieces, the axis it is cut along), one piece per index
    splits: ClassVar[dict[str, tuple[tuple[str, ...], int]]] = {}
    # The names by table, for a tower whose blocks' tensors are `<block>.<part>.<kind>` (the default gguf_name and
    # required): the tensors outside the blocks (checkpoint name → GGUF name), a block tensor's pattern (groups:
    # block, part, kind), each part's GGUF name, the kinds every part has, the config's count of blocks, and the
    # outside tensors a checkpoint may lack
    others: ClassVar[dict[str, str]] = {}
    layer: ClassVar[re.Pattern | None] = None
    layer_parts: ClassVar[dict[str, str]] = {}
    kinds: ClassVar[tuple[str, ...]] = ("weight", "bias")
    blocks_key: ClassVar[str] = "num_hidden_layers"
    optional: ClassVar[tuple[str, ...]] = ()

    def gguf_name(self, name: str, cfg: dict) -> str | None:
        if name in self.others:
            return self.others[name]
        m = self.layer.match(name) if self.layer else None
        if m and m.group(2) in self.layer_parts and m.group(3) in self.kinds:
            return f"v.blk.{m.group(1)}.{self.layer_parts[m.group(2)]}.{m.group(3)}"
        raise Unnamed(name, self.projector_type)  # never a silent gap

    def required(self, cfg: dict) -> list[str]:
        layers = [f"v.blk.{i}.{part}.{kind}" for i in range(cfg["vision_config"][self.blocks_key])
                  for part in self.layer_parts.values() for kind in self.kinds]
        return [n for n in self.others.values() if n not in self.optional] + layers

    def check(self, cfg: dict) -> str | None:
        """Why llama.cpp could not read this model's projector (a sentence), or None."""
        return None

    def transform(self, gguf_name: str, array: np.ndarray) -> np.ndarray:
        return array

    def shape(self, gguf_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape `transform` gives a tensor of `shape` (the header is written before any tensor is read)."""
        return shape

    def metadata(self, cfg: dict, preprocessor: dict, w: GGUFWriter) -> str | None:
        raise NotImplementedError

    def tensor_type(self, gguf_name: str, shape: tuple[int, ...]) -> str:
        return "f32" if len(shape) < 2 or gguf_name in self.f32_names else "f16"

    def configured(self, cfg: dict) -> Projector:
        return self

    def rows(self, cfg: dict, model_path: Path, files: dict[str, Path]) -> dict[str, tuple[str, Path, int]] | str:
        """GGUF name → (stored name, file, row) of each row taken from a language-model matrix; a sentence where one
        cannot be found."""
        return {}


class Unnamed(ValueError):
    """A tower tensor a projector's table does not name: a checkpoint laid out as we have not seen (a file without
    it, or with it unnamed, would be one llama.cpp refuses or reads wrong), so no projector file is written."""

    def __init__(self, name: str, projector_type: str):
        super().__init__(f"the vision tower holds {name}, which our {projector_type} projector does not name (a "
                         "layout not seen before; please report it)")


REGISTRY: dict[str, Projector] = {}


def register(cls: type[Projector]) -> type[Projector]:
    for model_type in cls.model_types:
        if model_type in REGISTRY:
            raise ValueError(f"projector for {model_type!r} registered twice")
        REGISTRY[model_type] = cls()
    return cls


def add_tower(w: GGUFWriter, cfg: dict, *, image_size: int, blocks: int, heads: int, eps: float,
              gelu: bool = True) -> None:
    """The `clip.vision.*` keys every tower has (its config names some of them its own way: passed in), its MLP's
    activation among them: GELU (SigLIP's and Qwen's towers: ggml's GELU is the tanh form), else SiLU; and the
    heads' width where it is not the width over the heads (llama.cpp assumes that)."""
    vision = cfg["vision_config"]
    head = head_dim(vision)
    if head * heads != vision["hidden_size"]:
        w.add_uint32("clip.vision.attention.head_dim", head)
    w.add_vision_projection_dim(cfg["text_config"]["hidden_size"])
    w.add_vision_image_size(image_size)
    w.add_vision_patch_size(vision["patch_size"])
    w.add_vision_embedding_length(vision["hidden_size"])
    w.add_vision_feed_forward_length(vision["intermediate_size"])
    w.add_vision_block_count(blocks)
    w.add_vision_head_count(heads)
    w.add_vision_attention_layernorm_eps(eps)
    if gelu:
        w.add_vision_use_gelu(True)
    else:
        w.add_vision_use_silu(True)


def head_dim(vision: dict) -> int:
    """A tower's heads' width: as its config says, else its width over its heads."""
    return vision.get("head_dim") or vision["hidden_size"] // (vision.get("num_attention_heads")
                                                               or vision["num_heads"])


def add_normalization(w: GGUFWriter, preprocessor: dict, family: str,
                      default: tuple[list[float], list[float], str] = DEFAULT_NORMALIZATION) -> str | None:
    """The image's normalization, which the weights do not say: the processor's settings where the base model ships
    them, else the family's processor's (`default`: mean, std, how the report says them; by default 0.5 and 0.5,
    pixels in [-1, 1], as Gemma 3's and Qwen 3.5's have it); the sentence for the report where it was assumed."""
    mean, std = preprocessor.get("image_mean"), preprocessor.get("image_std")
    assumed = mean is None or std is None
    if assumed:
        mean, std, _ = default
    w.add_vision_image_mean([float(x) for x in mean])
    w.add_vision_image_std([float(x) for x in std])
    return (f"the base model ships no image processor settings, so {family}'s ({default[2]}) were written"
            if assumed else None)


def vision_name(name: str) -> str | None:
    """A checkpoint tensor's name under `vision_tower.`, `multi_modal_projector.`, `visual.` (Qwen's tower and
    merger) or `embed_vision.` (Gemma 4's projector), whatever the layout; None for one of none of them (the language
    model's, an audio tower's)."""
    for prefix, plain in PREFIXES:
        if name.startswith(prefix):
            return plain + name.removeprefix(prefix)
    return None


def tower_folder(run: dict) -> tuple[Path, dict[str, Path]] | None:
    """(the folder whose shards hold the vision tower, its tensors by vision_name → (stored name, file)): a
    whole-model run's result where it saved the tower, else the base model's; None where neither holds one."""
    from core.offload.layerwise import weight_files

    folders = [Path(run["model_path"])]
    if strategies.get(run["strategy"]).result != "adapter":
        folders.insert(0, results.folder(run))
    for folder in folders:
        files = weight_files(folder) or {}
        tower = {vision_name(n): (n, path) for n, path in files.items() if vision_name(n)}
        if tower:
            return folder, tower
    return None


def _config(run: dict) -> dict:
    """The whole model's config (a vision-language model's: vision_config beside text_config), with transformers'
    defaults filled in where config.json leaves a setting out (Gemma 3's releases say no layer_norm_eps)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(run["model_path"])).to_dict()
    except (OSError, ValueError):  # a model type transformers does not know (remote code): no tower we write
        return {}


def _preprocessor(folder: Path) -> dict:
    """The image processor's settings (image_mean, image_std) as the base model ships them; {} where it has none."""
    found = {}
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (folder / name).is_file():
            settings = json.loads((folder / name).read_text(encoding="utf-8"))
            found |= settings.get("image_processor", settings)
    return found


def said(report: dict) -> str | None:
    """The sentence on the projector file of an export (export.json's `projector`): where it is and how llama.cpp
    and LM Studio take it, or why there is none; None for a model without a vision tower."""
    found = report.get("projector")
    if not found:
        return None
    if found.get("written"):
        return (f"Vision: {found['file']} holds the vision tower, {found['vision_tower']}: give it to llama.cpp "
                f"with --mmproj {found['file']}; LM Studio uses it beside the model.")
    return f"No vision projector: {found['why']}."


def write(run: dict, target: Path, progress) -> dict | None:
    """Write the run's vision tower and projector as llama.cpp's projector file at `target` (float16, vectors and the
    projector's f32_names in float32) and return what the export report says of it; None for a model without a
    vision tower (a text model), whose export stays as it was."""
    cfg = _config(run)
    if "vision_config" not in cfg:
        return _beside_source(run, target.parent)
    projector = REGISTRY.get(cfg.get("model_type"))
    if projector is None:
        return {"written": False, "why": f"we write none for {cfg.get('model_type')}'s vision tower yet (only for "
                                         f"{', '.join(sorted(REGISTRY))}), so the model reads text"}
    why = projector.check(cfg)
    if why:
        return {"written": False, "why": why}
    projector = projector.configured(cfg)
    found = tower_folder(run)
    if found is None:
        return {"written": False, "why": "the checkpoint holds no vision tower, so the model reads text"}
    folder, tower = found
    names = {}
    try:
        for name in sorted(tower):
            gguf_name = projector.gguf_name(name, cfg)
            if gguf_name is not None:
                names[gguf_name] = tower[name]
    except Unnamed as e:  # the language model's file is whole all the same
        return {"written": False, "why": str(e)}
    from core.offload.layerwise import weight_files

    rows = projector.rows(cfg, Path(run["model_path"]), weight_files(folder) or {})
    if isinstance(rows, str):
        return {"written": False, "why": rows}
    missing = [n for n in projector.required(cfg) if n not in names and n not in rows]
    if missing:
        return {"written": False, "why": f"the checkpoint's vision tower lacks {', '.join(missing[:3])}, which "
                                         "llama.cpp needs"}
    note, check = _write(projector, cfg, _preprocessor(Path(run["model_path"])), names, Path(target), progress, rows)
    whose = ("the run's own (it saved the whole model)" if folder != Path(run["model_path"])
             else "the base model's (the run trained the language model)")
    return {"written": True, "file": Path(target).name, "bytes": Path(target).stat().st_size,
            "tensors": sum(len(projector.splits.get(n, ((n,), 0))[0]) for n in names) + len(rows),
            "projector_type": projector.projector_type, "vision_tower": whose, "why": WHY, "check": check,
            **({"note": note} if note else {})}


def _beside_source(run: dict, folder: Path) -> dict | None:
    """For a base model converted from a GGUF (its language model alone) that had a projector file beside it, as
    LM Studio keeps a vision model (`mmproj-*.gguf` in the model's folder): that file, linked (or copied) into the
    export, since a run that trains the language model leaves the tower as it was; None where there is none."""
    from core.model_source import SOURCE_NOTE

    try:
        source = Path(json.loads((Path(run["model_path"]) / SOURCE_NOTE).read_text(encoding="utf-8"))["gguf"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    found = sorted(source.parent.glob("mmproj*.gguf"),
                   key=lambda f: (not re.search(r"(?<![a-z])f16", f.name.lower()), f.name))  # f16, not bf16
    if not found:
        return None
    target = folder / found[0].name  # (f16 first where there are several)
    atomic.link_or_copy(found[0], target)
    return {"written": True, "file": target.name, "bytes": target.stat().st_size, "why": WHY,
            "vision_tower": f"the base GGUF's, from the projector file beside it ({found[0]})"}


def _write(projector: Projector, cfg: dict, preprocessor: dict, names: dict, target: Path, progress,
           rows: dict | None = None) -> tuple[str | None, str]:
    """The file itself: header, metadata and tensor table first, then each tensor read from its shard, converted and
    written in turn, so memory holds one tensor; under a temporary name renamed at the end (core.atomic), once it
    reads back as written (_read_back). (the projector's note, the check's sentence)"""
    from safetensors import safe_open

    from core.gguf_export.writer import check_space

    shapes, pieces = {}, {}  # each tensor of the file: its shape; (its checkpoint tensor, the axis and index cut)
    for gguf_name, (stored, path) in names.items():
        with safe_open(str(path), framework="pt") as f:
            shape = tuple(f.get_slice(stored).get_shape())
        if gguf_name in projector.splits:
            parts, axis = projector.splits[gguf_name]
            if shape[axis] != len(parts):
                raise ValueError(f"{stored} has {shape[axis]} along axis {axis}, not the {len(parts)} pieces of "
                                 f"{gguf_name}")  # check() should have refused the model
            for i, part in enumerate(parts):
                shapes[part], pieces[part] = shape[:axis] + shape[axis + 1:], (stored, path, axis, i)
        else:
            shapes[gguf_name], pieces[gguf_name] = projector.shape(gguf_name, shape), (stored, path, None, None)
    for gguf_name, (stored, path, row) in (rows or {}).items():  # one row of a language-model matrix: a piece
        with safe_open(str(path), framework="pt") as f:           # along its first axis
            shape = tuple(f.get_slice(stored).get_shape())
        shapes[gguf_name], pieces[gguf_name] = shape[1:], (stored, path, 0, row)
    kinds = {n: projector.tensor_type(n, s) for n, s in shapes.items()}
    sizes = {n: int(np.prod(s)) * np.dtype(TYPES[kinds[n]][0]).itemsize for n, s in shapes.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    check_space(target.parent, sum(sizes.values()) + (1 << 20))
    digests = {}  # each tensor's bytes as written, for the read-back
    with atomic.temp_file(target) as tmp:
        w = GGUFWriter(tmp, ARCH)
        try:
            w.add_type(GGUFType.MMPROJ)
            w.add_name(target.name.removesuffix(".gguf"))
            w.add_file_type(int(LlamaFileType.MOSTLY_F16))
            w.add_clip_has_vision_encoder(True)
            w.add_clip_projector_type(projector.projector_type)
            note = projector.metadata(cfg, preprocessor, w)
            for n, shape in shapes.items():
                dtype, ggml = TYPES[kinds[n]]
                w.add_tensor_info(n, shape, np.dtype(dtype), sizes[n], raw_dtype=ggml)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for i, (n, (stored, path, axis, index)) in enumerate(pieces.items()):
                progress.update(i / len(pieces), f"Writing {target.name}")
                with safe_open(str(path), framework="pt") as f:
                    if axis is None:
                        array = f.get_tensor(stored).float().numpy()
                    else:  # a piece (a frame's kernel, an embedding's row): read alone, not a vocabulary's rows
                        part = (slice(None),) * axis + (slice(index, index + 1),)
                        array = f.get_slice(stored)[part].float().numpy().squeeze(axis)
                data = np.ascontiguousarray(projector.transform(n, array), dtype=TYPES[kinds[n]][0])
                digests[n] = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
                w.write_tensor_data(data)
            kv = dict(w.kv_data[0])
        finally:
            w.close()
        check = _read_back(tmp, [(n, tuple(shapes[n]), TYPES[kinds[n]][1], kinds[n].upper()) for n in pieces],
                           kv, digests, sizes)
    progress.update(1.0, f"Wrote {target.name}")
    return note, check


def _read_back(path: Path, planned: list[tuple], kv: dict, digests: dict, sizes: dict) -> str:
    """Read the written file back (our reader, as the model file's check does): its tensor table and metadata as
    planned and every tensor's bytes those written; the sentence for the report, or a KnownError (nothing kept)."""
    from core.errors import KnownError
    from core.gguf_export import reader, verify

    contents = reader.read(path)
    problems = verify.read_back(contents, planned, kv)
    if not problems:
        for info in contents.tensors:
            data = reader.tensor_bytes(path, contents, info, sizes[info.name])
            if hashlib.blake2b(data.tobytes(), digest_size=16).digest() != digests[info.name]:
                problems.append(f"{info.name} reads back other bytes than were written")
    if problems:
        raise KnownError(f"The vision projector file did not read back as written ({'; '.join(problems[:3])}), so "
                         "nothing was kept; check the disk and export again.")
    return (f"read back as written: {len(planned)} tensors, byte for byte, and {len(kv)} metadata values")


# Each registers itself:
from core.gguf_export.projectors import gemma3, gemma4, mistral3, qwen35  # noqa: E402,F401,I001
