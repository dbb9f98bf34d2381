"""The vision projector file (core/gguf_export/projectors/) read by llama.cpp itself, for Gemma 3, Qwen 3.5, Gemma 4 and
Mistral 3: a tiny model of each (tests/core/vision_language.py: a tower of one layer) is exported by our code as an
f32 language model and an f16 `mmproj` file; `llama-server --mmproj` is given a prompt holding one image, and its
next-token log-probabilities are compared with transformers' model (Gemma3ForConditionalGeneration,
Qwen3_5ForConditionalGeneration, Gemma4ForConditionalGeneration, Mistral3ForConditionalGeneration) on the same token
ids, the same pixels and, for Qwen's M-RoPE, the same positions. The unit tests read the file back with gguf's
reader; this reads it with the runtime people use, through its image preprocessing, its vision graph and its
projector.

    python benchmarks/llama_cpp_projectors.py --server PATH/llama-server [--model gemma3|qwen35|gemma4|mistral3|all]
        [--out FILE]

The check can fail: the same comparison is made with files or images that are wrong in one way each (the image's
pixels changed on llama.cpp's side; Gemma 3's soft-embedding norm written without Gemma's + 1; Qwen 3.5's patch
convolution with its second frame's kernel left out; Gemma 4's patch matrix read as a kernel colour by colour
without reordering its pixels; Mistral 3's queries and keys left in transformers' rotary order), and those figures
must come out far larger than the good one. Each image is PNG, so its bytes are the pixels, and of a size llama.cpp
copies without resizing: Gemma 3's 28×28, its image size; Qwen 3.5's 128×96, a multiple of its patches merged 2×2
(32 pixels) that is no square, so a swap of rows and columns would show, and holds 12 tokens, more than llama.cpp's
least for Qwen (8); Gemma 4's 480×336, 30×21 patches of 16 pooled 3×3 into 10×7 tokens, exactly llama.cpp's least
for Gemma 4 (70); Mistral 3's 112×84, 8×6 patches of 14 merged 2×2 into 4×3 tokens with an [IMG_BREAK] after each
row but the last (the tiny tokenizer is given Mistral's image tokens). Each entry also says how closely the two
language models agree with text in the image's place (language_model_alone). The result, one entry per model, goes
to benchmarks/results/llama_cpp_projectors.json unless --out says otherwise; the exit status is 1 when a check
fails. It needs no GPU.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import platform
import shlex
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.llama_cpp_check import Server, version  # noqa: E402
from core import atomic  # noqa: E402

BEFORE, AFTER = "Look at this picture:", " What is in it, matey?"
BOI, EOI = "<start_of_image>", "<end_of_image>"  # the text llama.cpp's mtmd puts around a Gemma 3 image
SIDE = 28  # the tiny model's image size
QWEN_BOI, QWEN_EOI = "<|vision_start|>", "<|vision_end|>"  # around a Qwen-VL image (mtmd.cpp, qwen3vl_merger)
QWEN_WIDTH, QWEN_HEIGHT = 128, 96  # 8×6 patches of 16, merged 2×2 into 4×3 tokens
QWEN_IMAGE_TOKEN = 5  # the tiny Qwen's image placeholder id (its release's, 248056, is past the tiny vocabulary)
G4_BOI, G4_EOI = "<|image>", "<image|>"  # around a Gemma 4 image (mtmd.cpp, gemma4v)
G4_WIDTH, G4_HEIGHT = 480, 336  # 30×21 patches of 16, pooled 3×3 into 10×7 tokens: llama.cpp's least, 70
G4_IMAGE_TOKEN = 5  # the tiny Gemma 4's image placeholder id (its release's, 258880, is past the tiny vocabulary)
# The tiny Gemma 4's sliding window made longer than the prompt (image and text, 120 tokens): the comparison is of
# the image's path, not of how each side bounds a window over tokens that attend both ways
G4_WINDOW = 256
M3_END = "[IMG_END]"  # after a Pixtral image (mtmd.cpp, pixtral): nothing before it, [IMG_BREAK] after each row
M3_TOKENS = ("[IMG]", "[IMG_BREAK]", M3_END)  # added to the tiny tokenizer as Mistral's tokenizer has them
M3_WIDTH, M3_HEIGHT = 112, 84  # 8×6 patches of 14, merged 2×2 into 4×3 tokens (llama.cpp's least: 8)
M3_IMAGE_SIZE = 224  # the tiny Pixtral's largest image (its rotary table's side in patches × 14)
TOP = 20
# The language model alone agrees to about 5e-4 (llama.cpp's GELU from a float16 table: llama_cpp_architectures.py);
# the tower's float16 weights and GELU add their rounding. Gemma 4's language model alone agrees less closely: to
# 3e-3 to 5e-3 on this prompt with text in the image's place (each entry's language_model_alone), so its bound is
# set above that; a wrong file still misses by ten times it and more.
TOLERANCE = 3e-3
TOLERANCES = {"gemma4": 1e-2}  # where a model's differs from TOLERANCE
FILLER = 65  # the text token put in each image token's place to measure the language model alone ("A")
MODELS = ("gemma3", "qwen35", "gemma4", "mistral3")
EXACT = ("--cache-type-k", "f32", "--cache-type-v", "f32", "--flash-attn", "off")


def png(pixels) -> bytes:
    """An 8-bit RGB PNG of `pixels` (height × width × 3, uint8): written by hand, each row unfiltered."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def post(server: Server, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:  # its sentence says why (an image it cannot read, a marker missing)
        raise SystemExit(f"llama-server refused {path}: {e.read().decode(errors='replace')[:400]}") from None


def token_ids(server: Server, boi: str = BOI, eoi: str = EOI) -> tuple[list[int], list[int]]:
    """(the ids before the image, after it) as llama.cpp's mtmd makes them: each piece of text tokenized alone, the
    image between its begin and end texts, the BOS in front where the vocabulary adds one."""
    def ids(text: str, special: bool = False) -> list[int]:
        return post(server, "/tokenize", {"content": text, "add_special": special, "parse_special": True})["tokens"]

    bos = ids("", special=True)
    return bos + ids(BEFORE) + ids(boi), ids(eoi) + ids(AFTER)


def llama_cpp_top(server: Server, image: bytes) -> list[tuple[int, float]]:
    """llama.cpp's TOP likeliest next tokens after the prompt with `image` in it, with their log-probabilities."""
    # The marker the image takes in the text is drawn at random per server in this version (<__media_XXXX__>, not
    # the fixed <__media__> its docs name); /props says which.
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/props", timeout=30) as r:
        marker = json.loads(r.read()).get("media_marker") or "<__media__>"
    prompt = {"prompt_string": f"{BEFORE}{marker}{AFTER}", "multimodal_data": [base64.b64encode(image).decode()]}
    body = {"prompt": prompt, "n_predict": 1, "n_probs": TOP, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "min_p": 0.0, "seed": 0, "ignore_eos": True, "cache_prompt": False}
    answer = post(server, "/completion", body)
    if not answer.get("completion_probabilities"):
        raise SystemExit(f"llama-server gave no probabilities: {json.dumps(answer)[:400]}")
    return [(t["id"], t["logprob"]) for t in answer["completion_probabilities"][0]["top_logprobs"]]


def gemma3_logprobs(model, ids: list[int], pixels, image_token: int):
    """transformers' log-probabilities of the next token, in float64, the image's pixels scaled as Gemma 3's
    processor (and llama.cpp with the file's mean and std, 0.5 each) scales them."""
    import torch

    values = (torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), pixel_values=values,
                       token_type_ids=torch.tensor([[int(i == image_token) for i in ids]])).logits
    return torch.log_softmax(logits[0, -1].double(), -1)


def qwen_pixels(pixels, patch: int = 16, merge: int = 2, frames: int = 2):
    """(pixel_values, image_grid_thw) as Qwen's image processor lays them out without resizing (transformers'
    Qwen2VLImageProcessor.patchify): scaled by mean and std 0.5, the image given twice (two frames a patch), one row
    per patch, the patches of each 2×2 merged square together."""
    import torch

    values = (torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1) / 255.0 - 0.5) / 0.5
    channels, height, width = values.shape
    rows, cols = height // patch, width // patch
    squares = values.reshape(channels, rows // merge, merge, patch, cols // merge, merge, patch)
    squares = squares.permute(1, 4, 2, 5, 0, 3, 6)  # rows/2, cols/2, 2, 2, channels, patch, patch
    flat = squares.unsqueeze(5).expand(-1, -1, -1, -1, -1, frames, -1, -1)
    return flat.reshape(rows * cols, channels * frames * patch * patch), torch.tensor([[1, rows, cols]])


def qwen35_logprobs(model, ids: list[int], pixels, image_token: int):
    """transformers' log-probabilities of the next token, in float64. Positions are its own get_rope_index's, from
    mm_token_type_ids and the image's grid: the image's tokens at (t, t + row, t + column), the text after it going
    on from t + the longer side in tokens, as llama.cpp's mtmd places them (MTMD_POS_TYPE_MROPE)."""
    import torch

    values, grid = qwen_pixels(pixels)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), pixel_values=values, image_grid_thw=grid,
                       mm_token_type_ids=torch.tensor([[int(i == image_token) for i in ids]])).logits
    return torch.log_softmax(logits[0, -1].double(), -1)


def gemma4_logprobs(model, ids: list[int], pixels, image_token: int, patch: int = 16):
    """transformers' log-probabilities of the next token, in float64. The pixels as Gemma 4's processor gives them
    without resizing (divided by 255; the model maps them to [-1, 1]): one row per patch, the patches row by row,
    each patch's pixels row by row with the colours innermost, and each patch's (column, row); the image's tokens
    attend to each other both ways (use_bidirectional_attention "vision"), as llama.cpp decodes them for a model
    of this width (mtmd_decode_use_non_causal)."""
    import torch

    values = torch.tensor(pixels, dtype=torch.float32) / 255.0
    height, width, channels = values.shape
    rows, cols = height // patch, width // patch
    flat = values.reshape(rows, patch, cols, patch, channels).permute(0, 2, 1, 3, 4).reshape(rows * cols, -1)
    where = torch.tensor([[c, r] for r in range(rows) for c in range(cols)])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), pixel_values=flat[None], image_position_ids=where[None],
                       mm_token_type_ids=torch.tensor([[int(i == image_token) for i in ids]])).logits
    return torch.log_softmax(logits[0, -1].double(), -1)


def mistral3_logprobs(model, ids: list[int], pixels, image_token: int):
    """transformers' log-probabilities of the next token, in float64, the pixels scaled as Pixtral's processor
    (and llama.cpp with the file's mean and std, CLIP's) scales them; the [IMG_BREAK] tokens are in `ids`."""
    import torch

    from core.gguf_export.projectors.mistral3 import CLIP_MEAN, CLIP_STD

    values = torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    values = (values - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), pixel_values=values,
                       image_sizes=torch.tensor([list(pixels.shape[:2])])).logits
    return torch.log_softmax(logits[0, -1].double(), -1)


def text_alone(server: Server, model, ids: list[int], image_token: int) -> float:
    """The largest |Δ log-probability| over llama.cpp's top tokens with text in the image's place: how closely the
    two sides' language models agree on a prompt of the same length without the tower."""
    import torch

    text = [FILLER if i == image_token else i for i in ids]
    body = {"prompt": text, "n_predict": 1, "n_probs": TOP, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "min_p": 0.0, "seed": 0, "ignore_eos": True, "cache_prompt": False}
    answer = post(server, "/completion", body)
    theirs = [(t["id"], t["logprob"]) for t in answer["completion_probabilities"][0]["top_logprobs"]]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([text])).logits
    return compare(theirs, torch.log_softmax(logits[0, -1].double(), -1))


def cpu_name() -> str:
    """The processor's model name where Linux says it (/proc/cpuinfo), else what platform knows."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text(errors="replace").splitlines() if info.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def compare(theirs, ours) -> float:
    """The largest |Δ log-probability| over llama.cpp's top tokens."""
    return max(abs(lp - float(ours[i])) for i, lp in theirs)


def build(folder: Path, which: str) -> tuple[dict, object]:
    """(a LoRA run on the tiny model, its merged model in float32): its norms moved off their initial
    values so a missed + 1 shows, and its weights made larger (as llama_cpp_architectures.py's SHARP) so that
    attention is far from uniform and the image moves the answer. Qwen's image placeholder is set to an id of the
    tiny vocabulary."""
    import torch
    from transformers import (AutoTokenizer, Gemma3ForConditionalGeneration, Gemma4ForConditionalGeneration,
                              Mistral3ForConditionalGeneration, Qwen3_5ForConditionalGeneration)

    from core import causal_lm
    from core.inference import trained_model
    from core.strategies.lora import targets_for
    from tests.core import vision_language
    from tests.core.gguf_export import tiny

    make, cls = {"gemma3": (vision_language.gemma3, Gemma3ForConditionalGeneration),
                 "qwen35": (vision_language.qwen3_5, Qwen3_5ForConditionalGeneration),
                 "gemma4": (vision_language.gemma4, Gemma4ForConditionalGeneration),
                 "mistral3": (vision_language.mistral3, Mistral3ForConditionalGeneration)}[which]
    base = folder / "base"
    tokenizer = AutoTokenizer.from_pretrained(tiny.byte_level(base))
    if which == "mistral3":
        tokenizer.add_special_tokens({"additional_special_tokens": list(M3_TOKENS)})
        tokenizer.save_pretrained(base)
    make(base, vocab=len(tokenizer))
    model = cls.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "norm" in name else 0.1))
    if which == "qwen35":
        model.config.image_token_id = QWEN_IMAGE_TOKEN
    if which == "gemma4":
        model.config.image_token_id = G4_IMAGE_TOKEN
        model.config.text_config.use_bidirectional_attention = "vision"
        model.config.text_config.sliding_window = G4_WINDOW
    if which == "mistral3":
        model.config.image_token_id = tokenizer.convert_tokens_to_ids(M3_TOKENS[0])
        model.config.vision_config.image_size = M3_IMAGE_SIZE
    model.save_pretrained(base)
    lm = causal_lm.from_pretrained(base, dtype=torch.float32)
    run = tiny.adapter_run(lm, folder, base, targets_for(lm, "auto")["target_modules"], run_id="p1")
    merged = trained_model(base, "lora", folder / "run" / "result", torch.float32).merge_and_unload().eval()
    if which in ("qwen35", "mistral3"):  # the causal LM training loads reads text alone: its merged layers go into
        model.model.language_model.load_state_dict(merged.model.state_dict())  # the whole, whose tower is the base's
        model.lm_head.load_state_dict(merged.lm_head.state_dict())
        merged = model.eval()
    return run, merged


def unpaired(array, head: int):
    """Queries' or keys' rows put back in transformers' order (each head's halves), undoing mistral3.py's pairing."""
    rows, cols = array.shape
    return array.reshape(rows // head, head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


@contextlib.contextmanager
def written_as(cls, change):
    """The projector's transform with `change` put after it, for one wrong file."""
    original = cls.transform
    cls.transform = lambda self, n, array: change(n, original(self, n, array))
    try:
        yield
    finally:
        cls.transform = original


def check_model(which: str, server_binary: Path, folder: Path) -> dict:
    """One model's entry: the good file and image against transformers, then the wrong ones."""
    import numpy as np

    from core import export
    from core.gguf_export import projectors
    from core.gguf_export.projectors import gemma3, gemma4, mistral3, qwen35
    from core.progress import Progress

    sizes = {"gemma3": (SIDE, SIDE), "qwen35": (QWEN_HEIGHT, QWEN_WIDTH), "gemma4": (G4_HEIGHT, G4_WIDTH),
             "mistral3": (M3_HEIGHT, M3_WIDTH)}
    height, width = sizes[which]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    other = pixels.copy()
    other[: height // 2] = 255 - other[: height // 2]  # the top half inverted
    run, model = build(folder, which)
    out = export.export(run, "gguf", folder / "gguf", "f32", Progress())
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    lm, mmproj = out / report["file"], out / report["projector"]["file"]
    wrong = folder / "mmproj-wrong.gguf"
    if which == "gemma3":  # the norm as the checkpoint stores it, without Gemma's + 1
        wrong_case, cls, change = "norm without + 1", gemma3.Gemma3, lambda n, a: a - 1.0 if n == gemma3.NORM else a
        boi, eoi, image_token, logprobs = BOI, EOI, model.config.image_token_id, gemma3_logprobs
        n_tokens = model.config.mm_tokens_per_image
    elif which == "gemma4":  # the patch matrix taken as a kernel colour by colour, its pixels not reordered
        wrong_case, cls = "patch matrix's pixels not reordered", gemma4.Gemma4
        change = lambda n, a: a.transpose(0, 2, 3, 1).reshape(a.shape) if n == gemma4.PATCH else a  # noqa: E731
        boi, eoi, image_token, logprobs = G4_BOI, G4_EOI, G4_IMAGE_TOKEN, gemma4_logprobs
        n_tokens = (height // 48) * (width // 48)
    elif which == "mistral3":  # the queries' and keys' rows as transformers has them, not paired for llama.cpp
        wrong_case, cls = "queries' and keys' rows not reordered", mistral3.Mistral3
        head = model.config.vision_config.head_dim
        change = lambda n, a: unpaired(a, head) if mistral3.ROTATED.match(n) else a  # noqa: E731
        boi, eoi, image_token, logprobs = "", M3_END, model.config.image_token_id, mistral3_logprobs
        n_tokens = (height // 28) * (width // 28)
        row = [image_token] * (width // 28) + [model.config.text_config.vocab_size]  # a stand-in, set below
    else:  # the 3-D convolution read as over one frame: the second frame's kernel left out
        wrong_case, cls = "patch convolution's second frame left out", qwen35.Qwen35
        change = lambda n, a: a * 0.0 if n == f"{qwen35.PATCH}.1" else a  # noqa: E731
        boi, eoi, image_token, logprobs = QWEN_BOI, QWEN_EOI, QWEN_IMAGE_TOKEN, qwen35_logprobs
        n_tokens = (height // 32) * (width // 32)
    with written_as(cls, change):
        projectors.write(run, wrong, Progress())
    checks, ids, command, alone = [], None, None, None
    for name, projector_file, sent in (("good", mmproj, pixels), ("image's pixels changed", mmproj, other),
                                       (wrong_case, wrong, pixels)):
        with Server(server_binary, lm, extra=(*EXACT, "--mmproj", str(projector_file))) as server:
            before, after = token_ids(server, boi, eoi)
            if image_token in before + after:
                raise SystemExit(f"the image placeholder {image_token} is in the text's ids; choose another")
            if which == "mistral3":  # each row of the image's tokens, an [IMG_BREAK] between rows (as llama.cpp)
                row[-1] = post(server, "/tokenize", {"content": M3_TOKENS[1], "parse_special": True})["tokens"][0]
                ids = before + (row * (height // 28))[:-1] + after
            else:
                ids = before + [image_token] * n_tokens + after
            theirs = llama_cpp_top(server, png(sent))
            if command is None:  # the good case's server
                command, alone = server.command, text_alone(server, model, ids, image_token)
        ours = logprobs(model, ids, pixels, image_token)
        top = [int(i) for i in ours.topk(TOP).indices]
        checks.append({"case": name, "max_logprob_difference": compare(theirs, ours),
                       "same_top_tokens": sorted(i for i, _ in theirs) == sorted(top),
                       "llama_cpp_top5": theirs[:5], "transformers_top5": [(i, float(ours[i])) for i in top[:5]]})
    image_effect = float((logprobs(model, ids, other, image_token) - ours).abs().max())
    good, *broken = checks
    tolerance = TOLERANCES.get(which, TOLERANCE)
    good["ok"] = good["same_top_tokens"] and good["max_logprob_difference"] <= tolerance
    for c in broken:  # a wrong file or image must miss by far more than the good one may
        c["ok"] = c["max_logprob_difference"] > 10 * tolerance
    for c in checks:
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {which} {c['case']}: largest |Δ log-probability| over llama.cpp's top "
              f"{TOP} {c['max_logprob_difference']:.1e}{'' if c['same_top_tokens'] else ' (other top tokens)'}")
    print(f"({which}: in transformers alone, the changed image moves the log-probabilities by up to "
          f"{image_effect:.2f}; with text in the image's place the language models differ by {alone:.1e})")
    return {"server_command": [Path(a).name if "/" in a else a for a in command], "language_model": "f32",
            "projector": "f16", "projector_type": report["projector"]["projector_type"],
            "image": f"{width}x{height} PNG, random pixels", "image_tokens": n_tokens, "token_ids": ids,
            "image_effect_in_transformers": image_effect, "language_model_alone": alone, "tolerance": tolerance,
            "checks": checks, "ok": all(c["ok"] for c in checks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, required=True, help="The llama-server binary of a llama.cpp build.")
    parser.add_argument("--model", choices=(*MODELS, "all"), default="all",
                        help="Which tiny model's projector to check (default: all).")
    parser.add_argument("--out", type=Path,
                        help="JSON to write (default benchmarks/results/llama_cpp_projectors.json).")
    args = parser.parse_args(argv)
    if not args.server.is_file():
        parser.error(f"{args.server}: no such file; give the llama-server binary of a llama.cpp build.")
    models = {}
    for which in MODELS if args.model == "all" else (args.model,):
        with tempfile.TemporaryDirectory(prefix=f"llama-cpp-mmproj-{which}-") as tmp:
            models[which] = check_model(which, args.server, Path(tmp))
    result = {
        "benchmark": "llama_cpp_projectors", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": cpu_name(), "platform": platform.platform()},
        "llama_cpp": version(args.server), "tolerance": TOLERANCE, "models": models,
        "ok": all(m["ok"] for m in models.values()),
    }
    out_file = args.out or REPO / "benchmarks" / "results" / "llama_cpp_projectors.json"
    atomic.write_json(out_file, result)
    print(f"Wrote {out_file}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
