"""Write constraints.txt: the exact versions of every library the test suite last passed with.

pyproject.toml states ranges (what Tuneforge should work with); `make setup` installs with `-c constraints.txt`,
so a fresh clone, CI and the packaged app get the set that was tested, and a new upstream release cannot break
them overnight (transformers 5.25 did, three ways at once). `make canary` installs the newest releases the ranges
allow into .venv-canary and runs the suite there; when it passes, `make lock` runs this script with that
environment's Python to move the tested set forward.

    .venv-canary/bin/python packaging/lock.py            # rewrites constraints.txt from that environment
    .venv/bin/python packaging/lock.py --out /tmp/c.txt

Left out, each for a reason:
- torch, triton and the nvidia-* / cuda-* libraries (not nvidia-ml-py, NVML's bindings, which we use): a CUDA
  torch pins its own Triton and CUDA libraries (torch 2.13.0 requires triton 3.7.1 and cuda-toolkit 13.0.3), so
  pinning what a CPU machine has would make pip refuse a GPU machine's set-up.
  The Makefile installs torch, and Triton to match it, itself on machines without an NVIDIA GPU.
- tuneforge itself, and pip, setuptools and wheel (the installer's own tools).
`--floor` prints the other end: the lowest version pyproject allows of each library the app depends on, as pip
arguments, for `make floor` (the suite on those versions, so that the floors stay true; 5.0 claimed for
transformers had not been since 5.23 added an API we call, and pyarrow 14 does not import under NumPy 2).
torch and Triton are not floored (UNFLOORED): without a GPU the only torch at hand is the CPU pair the Makefile
pins, and an older one is a CUDA build of several GB.

Each pin carries `python_version >= "<this Python>"`: the set was tested on this Python, and the releases in it
ship wheels for newer ones; an older Python (3.10 is allowed) resolves from the ranges instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import atomic  # noqa: E402

CONSTRAINTS = REPO / "constraints.txt"
PYPROJECT = REPO / "pyproject.toml"
UNFLOORED = ("torch", "triton")  # their floors are not checked: see --floor above
LEFT_OUT = re.compile(r"^(torch|triton|nvidia-(?!ml-py$).*|cuda-.*|tuneforge|pip|setuptools|wheel)$")  # NVML stays
HEADER = """\
# The tested set: exact versions of every library `make test` last passed with (packaging/lock.py wrote this).
# `make setup` installs with `-c constraints.txt`; pyproject.toml keeps the ranges Tuneforge supports.
# To move forward: `make canary` (the newest releases in range, in .venv-canary, and the suite), then `make lock`.
# torch and triton are not here: the Makefile pins them on machines without an NVIDIA GPU (see packaging/lock.py).
"""


def normalized(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503): lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def render(versions: dict[str, str], python: tuple[int, int]) -> str:
    """constraints.txt's text for {distribution name: version}, sorted, without the libraries left out."""
    marker = f'python_version >= "{python[0]}.{python[1]}"'
    pins = sorted((normalized(name), version) for name, version in versions.items())
    lines = [f"{name}=={version} ; {marker}" for name, version in pins if not LEFT_OUT.match(name)]
    return HEADER + "".join(line + "\n" for line in lines)


def floors(requirements: list[str]) -> list[str]:
    """`name==lowest` for each library among `requirements` (pyproject's strings) from its >= bound, but UNFLOORED."""
    pins = []
    for text in requirements:
        found = re.match(r"\s*([A-Za-z0-9_.\-]+)[^;]*?>=\s*([^,;\s]+)", text)
        if found and normalized(found.group(1)) not in UNFLOORED:
            pins.append(f"{normalized(found.group(1))}=={found.group(2)}")
    return pins


def declared(extras: bool = True) -> list[str]:
    """pyproject's dependencies, and its extras (the test and packaging tools) unless extras=False, as written."""
    import tomllib  # Python 3.11 on; a developer's tool, not the app's

    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    groups = project["optional-dependencies"].values() if extras else []
    return project["dependencies"] + [r for group in groups for r in group]


def installed() -> dict[str, str]:
    """Every distribution of this Python's environment, by name."""
    return {dist.metadata["Name"]: dist.version for dist in metadata.distributions() if dist.metadata["Name"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CONSTRAINTS, help="where to write (constraints.txt)")
    parser.add_argument("--floor", action="store_true",
                        help="print the lowest versions allowed of the app's libraries instead")
    args = parser.parse_args(argv)
    if args.floor:
        print(" ".join(floors(declared(extras=False))))
        return 0
    text = render(installed(), sys.version_info[:2])
    atomic.write_text(args.out, text)
    print(f"wrote {args.out}: {len(text.splitlines()) - len(HEADER.splitlines())} pins from {sys.executable}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
