"""The vision projector file (core/gguf_export/projectors/) read by llama.cpp itself: a tiny Gemma 3 (tests/core/
vision_language.py: a SigLIP tower of one layer, 28×28 images in 2×2 patches pooled to one token) is exported by our
code as an f32 language model and an f16 `mmproj` file; `llama-server --mmproj` is given a prompt holding one image,
and its next-token log-probabilities are compared with transformers' Gemma3ForConditionalGeneration on the same token
ids and the same pixels. The unit tests read the file back with gguf's reader; this reads it with the runtime people
use, through its image preprocessing, its SigLIP graph, its pooling and its projector.

    python benchmarks/llama_cpp_projectors.py --server PATH/llama-server [--out FILE]

The check can fail: the same comparison is made with files or images that are wrong in one way each (the image's
pixels changed on llama.cpp's side, the soft-embedding norm written without Gemma's + 1), and those figures must come
out far larger than the good one. The image is 28×28, the model's image size, so llama.cpp copies it without
resizing, and PNG, so its bytes are the pixels. The result goes to benchmarks/results/llama_cpp_projectors.json
unless --out says otherwise; the exit status is 1 when a check fails. It needs no GPU.
"""

from __future__ import annotations

import argparse
import base64
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
TOP = 20
# The language model alone agrees to about 5e-4 (llama.cpp's GELU from a float16 table: llama_cpp_architectures.py);
# the tower's float16 weights and GELU add their rounding.
TOLERANCE = 3e-3
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


def token_ids(server: Server) -> tuple[list[int], list[int]]:
    """(the ids before the image, after it) as llama.cpp's mtmd makes them: each piece of text tokenized alone, the
    image between its begin and end texts, the BOS in front where the vocabulary adds one."""
    def ids(text: str, special: bool = False) -> list[int]:
        return post(server, "/tokenize", {"content": text, "add_special": special, "parse_special": True})["tokens"]

    bos = ids("", special=True)
    return bos + ids(BEFORE) + ids(BOI), ids(EOI) + ids(AFTER)


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


def transformers_logprobs(model, ids: list[int], pixels, image_token: int):
    """transformers' log-probabilities of the next token, in float64, the image's pixels scaled as Gemma 3's
    processor (and llama.cpp with the file's mean and std, 0.5 each) scales them."""
    import torch

    values = (torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), pixel_values=values,
                       token_type_ids=torch.tensor([[int(i == image_token) for i in ids]])).logits
    return torch.log_softmax(logits[0, -1].double(), -1)


def cpu_name() -> str:
    """The processor's model name where Linux says it (/proc/cpuinfo), else what platform knows."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text(errors="replace").splitlines() if info.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def compare(theirs, ours) -> float:
    """The largest |Δ log-probability| over llama.cpp's top tokens."""
    return max(abs(lp - float(ours[i])) for i, lp in theirs)


def build(folder: Path) -> tuple[dict, object]:
    """(a LoRA run on the tiny Gemma 3, its merged model in float32): its norms moved off their initial
    values so a missed + 1 shows, and its weights made larger (as llama_cpp_architectures.py's SHARP) so that
    attention is far from uniform and the image moves the answer."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

    from core import causal_lm
    from core.inference import trained_model
    from core.strategies.lora import targets_for
    from tests.core import vision_language
    from tests.core.gguf_export import tiny

    base = folder / "base"
    tokenizer = AutoTokenizer.from_pretrained(tiny.byte_level(base))
    vision_language.gemma3(base, vocab=len(tokenizer))
    model = Gemma3ForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "norm" in name else 0.1))
    model.save_pretrained(base)
    lm = causal_lm.from_pretrained(base, dtype=torch.float32)
    run = tiny.adapter_run(lm, folder, base, targets_for(lm, "auto")["target_modules"], run_id="p1")
    merged = trained_model(base, "lora", folder / "run" / "result", torch.float32).merge_and_unload().eval()
    return run, merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, required=True, help="The llama-server binary of a llama.cpp build.")
    parser.add_argument("--out", type=Path,
                        help="JSON to write (default benchmarks/results/llama_cpp_projectors.json).")
    args = parser.parse_args(argv)
    if not args.server.is_file():
        parser.error(f"{args.server}: no such file; give the llama-server binary of a llama.cpp build.")
    import numpy as np

    from core import export
    from core.gguf_export import projectors
    from core.gguf_export.projectors import gemma3
    from core.progress import Progress

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    other = pixels.copy()
    other[: SIDE // 2] = 255 - other[: SIDE // 2]  # the top half inverted
    with tempfile.TemporaryDirectory(prefix="llama-cpp-mmproj-") as tmp:
        folder = Path(tmp)
        run, model = build(folder)
        out = export.export(run, "gguf", folder / "gguf", "f32", Progress())
        report = json.loads((out / "export.json").read_text(encoding="utf-8"))
        lm, mmproj = out / report["file"], out / report["projector"]["file"]
        no_offset = folder / "mmproj-no-offset.gguf"  # the norm as the checkpoint stores it, without Gemma's + 1
        original = gemma3.Gemma3.transform
        gemma3.Gemma3.transform = lambda self, name, array: array
        try:
            projectors.write(run, no_offset, Progress())
        finally:
            gemma3.Gemma3.transform = original
        image_token = model.config.image_token_id
        checks, ids, command = [], None, None
        for name, projector_file, sent in (("good", mmproj, pixels), ("image's pixels changed", mmproj, other),
                                           ("norm without + 1", no_offset, pixels)):
            with Server(args.server, lm, extra=(*EXACT, "--mmproj", str(projector_file))) as server:
                before, after = token_ids(server)
                ids = before + [image_token] * model.config.mm_tokens_per_image + after
                theirs = llama_cpp_top(server, png(sent))
                command = command or server.command  # the good case's
            ours = transformers_logprobs(model, ids, pixels, image_token)
            top = [int(i) for i in ours.topk(TOP).indices]
            checks.append({"case": name, "max_logprob_difference": compare(theirs, ours),
                           "same_top_tokens": sorted(i for i, _ in theirs) == sorted(top),
                           "llama_cpp_top5": theirs[:5], "transformers_top5": [(i, float(ours[i])) for i in top[:5]]})
        image_effect = float((transformers_logprobs(model, ids, other, image_token) - ours).abs().max())
    good, *broken = checks
    good["ok"] = good["same_top_tokens"] and good["max_logprob_difference"] <= TOLERANCE
    for c in broken:  # a wrong file or image must miss by far more than the good one may
        c["ok"] = c["max_logprob_difference"] > 10 * TOLERANCE
    for c in checks:
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['case']}: largest |Δ log-probability| over llama.cpp's top {TOP} "
              f"{c['max_logprob_difference']:.1e}{'' if c['same_top_tokens'] else ' (other top tokens)'}")
    print(f"(in transformers alone, the changed image moves the log-probabilities by up to {image_effect:.2f})")
    result = {
        "benchmark": "llama_cpp_projectors", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": cpu_name(), "platform": platform.platform()},
        "llama_cpp": version(args.server), "server_command": [Path(a).name if "/" in a else a for a in command],
        "language_model": "f32", "projector": "f16", "image": f"{SIDE}x{SIDE} PNG, random pixels", "token_ids": ids,
        "tolerance": TOLERANCE, "image_effect_in_transformers": image_effect, "checks": checks,
        "ok": all(c["ok"] for c in checks),
    }
    out_file = args.out or REPO / "benchmarks" / "results" / "llama_cpp_projectors.json"
    atomic.write_json(out_file, result)
    print(f"Wrote {out_file}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
