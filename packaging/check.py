"""The packaged app, used as a person would: `make package-check` after `make package`.

Runs the built executable (dist/tuneforge/tuneforge, or --exe) in a fresh data folder, one step at a time:

- profile: `tuneforge profile --json` describes this machine;
- kernels: our kernels' sources are in the bundle and Triton could build its launcher (Python's headers are
           in the bundle; the C compiler is the machine's);
- train:   a 2-step LoRA run of the bundled default model on 16 demo rows, on the GPU where there is one (our
           kernels then compile from the bundle); the app's supervisor starts the trainer as the executable
           again (`tuneforge --run-module core.trainer RUN.json`);
- qlora:   the same with a 4-bit base (bitsandbytes' native library is in the bundle);
- chat:    the LoRA run answers a prompt;
- export:  `export --format gguf` writes a file that passes its own verification (tokenizer, read-back,
           transformers' GGUF loader, agreement with the merged model);
- window:  `--run-module ui.screenshots` drives the main window and the wizard offscreen, a real run from the
           wizard included, and saves their PNGs (Qt's plugins and our resources are in the bundle).

It prints a line per step with its seconds, then the bundle's size, and writes JSON to
benchmarks/results/package_check-<platform>.json (or --out). A failing step prints its output's tail; exit 1.
Not part of `make test`: the build alone takes minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import atomic  # noqa: E402

DEMO = REPO / "resources" / "demo" / "pirate_chat.jsonl"
EXE = REPO / "dist" / "tuneforge" / ("tuneforge.exe" if os.name == "nt" else "tuneforge")
STEP_LIMIT_S = 1200


def run(exe: Path, home: Path, *args, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    done = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=STEP_LIMIT_S,
                          cwd=home, env=dict(os.environ, TUNEFORGE_HOME=str(home), **(env or {})))
    return done, round(time.monotonic() - t0, 1)


def steps(exe: Path, home: Path):
    """(name, check) pairs; each check returns a short finding or raises AssertionError with what went wrong."""
    data = home / "pirate16.jsonl"
    data.write_text("".join(DEMO.read_text(encoding="utf-8").splitlines(keepends=True)[:16]), encoding="utf-8")
    found: dict = {}

    def profile():
        done, s = run(exe, home, "profile", "--json")
        assert done.returncode == 0, tail(done)
        found_here = json.loads(done.stdout)
        gpus = ", ".join(g.get("name", "?") for g in found_here["gpus"]) or "no GPU"
        return s, f"{found_here['cpu_name']}, {found_here['cores_logical']} cores, {gpus}"

    def kernels():
        sources = sorted(p.name for p in (exe.parent / "_internal" / "tuneforge_kernels").glob("*.py"))
        assert "patch.py" in sources and "lora.py" in sources, f"the kernels' sources are not in the bundle: {sources}"
        done, s = run(exe, home, "--run-module", "tuneforge_kernels.toolchain")
        assert "Python.h" not in done.stdout, tail(done)  # the headers are the bundle's; the compiler the machine's
        return s, f"{len(sources)} kernel sources; {done.stdout.strip()}"

    def trained(strategy: str):
        done, s = run(exe, home, "train", "--model", "default", "--data", data, "--strategy", strategy,
                      "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--seq-len", "128", "--json")
        events = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        assert done.returncode == 0 and events and events[-1].get("status") == "done", tail(done)
        losses = [e["loss"] for e in events if e["event"] == "step"]
        start = next(e for e in events if e["event"] == "start")  # on a GPU: our kernels, compiled in the bundle
        kernels = ", ".join(start["kernels"]) or "none"
        return s, events[-1]["run_id"], f"on {start['device']}, kernels {kernels}, losses {losses}"

    def train():
        s, found["run"], finding = trained("lora")
        return s, finding

    def qlora():  # bitsandbytes' native library is in the bundle
        s, _, finding = trained("qlora")
        return s, finding

    def chat():
        done, s = run(exe, home, "chat", "--run", found["run"], "--prompt", "Where is the treasure?",
                      "--max-new-tokens", "8")
        assert done.returncode == 0 and done.stdout.strip(), tail(done)
        return s, repr(done.stdout.strip())

    def export():
        out = home / "exported"
        done, s = run(exe, home, "export", "--run", found["run"], "--format", "gguf", "--out", out)
        assert done.returncode == 0, tail(done)
        report = json.loads((out / "export.json").read_text(encoding="utf-8"))
        assert report["verification"]["ok"], report["verification"]
        return s, report["verification"]["summary"]

    def window():
        shots = home / "shots"
        done, s = run(exe, home, "--run-module", "ui.screenshots", shots, env={"QT_QPA_PLATFORM": "offscreen"})
        pngs = sorted(p.name for p in shots.glob("*.png"))
        assert done.returncode == 0 and len(pngs) >= 5, tail(done)
        return s, f"{len(pngs)} screenshots"

    return [("profile", profile), ("kernels", kernels), ("train", train), ("qlora", qlora), ("chat", chat),
            ("export", export), ("window", window)]


def tail(done: subprocess.CompletedProcess, chars: int = 3000) -> str:
    return f"exit {done.returncode}\n{(done.stdout + done.stderr)[-chars:]}"


def bundle_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exe", type=Path, default=EXE, help="The built executable (default dist/tuneforge/).")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/package_check-<os>.json).")
    args = parser.parse_args(argv)
    if not args.exe.is_file():
        print(f"{args.exe}: no built app there; run `make package` first.", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="tuneforge-package-check-"))
    results, ok = {}, True
    for name, check in steps(args.exe, home):
        try:
            seconds, finding = check()
        except AssertionError as e:
            print(f"{name:8} FAILED\n{e}")
            results[name] = {"ok": False, "output": str(e)[-3000:]}
            ok = False
            break
        print(f"{name:8} {seconds:7.1f} s  {finding}")
        results[name] = {"ok": True, "seconds": seconds, "finding": finding}
    size = bundle_bytes(args.exe.parent)
    print(f"bundle   {size / 2**30:.2f} GiB in {args.exe.parent}")
    system = f"{platform.system()}-{platform.machine()}".lower()
    out = args.out or REPO / "benchmarks" / "results" / f"package_check-{system}.json"
    atomic.write_json(out, {
        "check": "package_check", "ok": ok, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": ("python packaging/check.py " + shlex.join(argv or sys.argv[1:])).strip(),
        "platform": platform.platform(), "python": platform.python_version(), "bundle_bytes": size,
        "steps": results,
    })
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
