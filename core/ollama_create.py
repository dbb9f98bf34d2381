"""An exported GGUF handed to Ollama, so `ollama run NAME` answers with the fine-tune: `ollama create NAME -f Modelfile`
run in the export's folder, the Modelfile our exporter wrote beside the file (its template, stop words and system
prompt; core/gguf_export/modelfile.py).

Why Ollama's own program rather than writing its store ourselves: the store's layout is Ollama's to change, where it
runs as a service the store belongs to another user, and `ollama create` hands the file to the running server, which
copies it in as a blob and writes the manifest and config itself (the size, family and quantization it shows). The
server must be running (the desktop app, or `ollama serve`); where it is not, Ollama's own sentence is passed on.

The name is checked before anything is exported, with Ollama's rules for `[NAMESPACE/]MODEL[:TAG]` (letters, digits,
`_`, `-` and `.`, the first a letter, digit or `_`; no `.` in a namespace; each part up to 80 characters), and a
name the store already has is refused, as `ollama create` would replace that model without a word.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core import other_apps
from core.errors import BadArgument, KnownError
from core.progress import Progress

PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # the terminal codes of Ollama's spinner, which its output keeps
PLACES = (  # where the installers put the program when it is not on PATH (the desktop apps on macOS and Windows)
    Path("/Applications/Ollama.app/Contents/Resources/ollama"),
    Path(os.environ.get("LOCALAPPDATA", "~")).expanduser() / "Programs" / "Ollama" / "ollama.exe",
)


def program() -> Path | None:
    """Ollama's command-line program on this machine, or None."""
    found = shutil.which("ollama")
    if found:
        return Path(found)
    return next((p for p in PLACES if p.is_file()), None)


def checked_name(name: str) -> str:
    """`name` as Ollama will list it (`:latest` added where no tag is given), or BadArgument saying what is wrong."""
    name = name.strip()
    path, colon, tag = name.partition(":")
    problem = _problem(path.split("/"), tag if colon else None)
    if problem:
        raise BadArgument(f"'{name}' cannot be an Ollama model's name: {problem}; use letters, digits, '_', '-' and "
                          "'.', e.g. pirate-smollm2:q8_0.")
    full = f"{path}:{tag or 'latest'}"
    taken = next((found.label for found in other_apps.ollama_models() if found.label.lower() == full.lower()), None)
    if taken:
        raise BadArgument(f"Ollama already has a model named {taken}; give another name, or remove that one with "
                          f"`ollama rm {taken}` first.")
    return full


def _problem(parts: list[str], tag: str | None) -> str | None:
    if len(parts) > 2 or (tag is not None and ("/" in tag or ":" in tag)):
        return "Ollama names are MODEL, MODEL:TAG or NAMESPACE/MODEL:TAG"
    for part in parts + ([tag] if tag is not None else []):
        if not PART.fullmatch(part):
            return f"'{part}' is empty, over 80 characters, or has a character Ollama does not allow"
    if len(parts) == 2 and "." in parts[0]:
        return "Ollama allows no '.' in a namespace"
    return None


@dataclass(frozen=True)
class Target:
    program: Path  # Ollama's command-line program
    name: str  # the model's name as Ollama lists it ("pirate:latest")


def target(name: str) -> Target:
    """Where the export will go, asked before exporting so a sentence comes before any work: BadArgument where Ollama
    is not installed here, or the name is not one Ollama takes or already has."""
    found = program()
    if found is None:
        raise BadArgument("Ollama was not found here (no `ollama` program on PATH); install it from ollama.com, or "
                          "run `ollama create NAME -f Modelfile` in the export's folder where it is installed.")
    return Target(found, checked_name(name))


def create(export_dir: Path, to: Target, progress: Progress | None = None) -> str:
    """Hand the GGUF export in `export_dir` to Ollama; what to type to use it. KnownError, with Ollama's own words,
    where Ollama did not take it (its server not running, a file it cannot read)."""
    modelfile = Path(export_dir) / "Modelfile"
    if not modelfile.is_file():
        raise BadArgument(f"{export_dir} has no Modelfile; only a GGUF export (--format gguf) can go to Ollama.")
    if progress is not None:
        progress.update(None, f"Ollama is taking in the model as {to.name} (it copies the file)…")
    done = subprocess.run([str(to.program), "create", to.name, "-f", str(modelfile)], cwd=export_dir, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        said = [line.strip() for line in ANSI.sub("", done.stdout).replace("\r", "\n").splitlines() if line.strip()]
        raise KnownError(f"Ollama did not take the model ({said[-1] if said else f'exit {done.returncode}'}); start "
                         f"Ollama and run `ollama create {to.name} -f Modelfile` in {export_dir}.")
    return f"ollama run {to.name}"
