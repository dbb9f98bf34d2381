"""constraints.txt, the tested set `make setup` installs (packaging/lock.py), agrees with pyproject's ranges."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement  # the PyPA library, not our packaging/ folder (no __init__.py)

pytest.importorskip("tomllib")  # lock.declared reads pyproject with it (Python 3.11 on)
REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("tuneforge_lock", REPO / "packaging" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)
MAKEFILE = (REPO / "Makefile").read_text(encoding="utf-8")


def pins() -> dict[str, str]:
    """{normalized name: version} of constraints.txt."""
    found = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"constraints.txt pins exact versions, not {line!r}"
            found[lock.normalized(requirement.name)] = specifier.version
    return found


def declared() -> list[Requirement]:
    return [Requirement(r) for r in lock.declared()]


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_every_declared_library_is_pinned_inside_its_range(requirement):
    name = lock.normalized(requirement.name)
    if lock.LEFT_OUT.match(name):  # torch and triton only: the Makefile's own pin, checked below
        assert name in ("torch", "triton") and name not in pins()
        return
    assert name in pins(), f"{name} is in pyproject.toml but not in constraints.txt: run `make lock`"
    assert requirement.specifier.contains(pins()[name], prereleases=True), (
        f"constraints.txt has {name}=={pins()[name]}, outside pyproject's {requirement}: "
        "run `make canary`, then `make lock`")


def test_the_makefile_pins_torch_and_triton_inside_the_ranges_and_installs_with_the_tested_set():
    ranges = {lock.normalized(r.name): r.specifier for r in declared()}
    cpu_line = next(line for line in MAKEFILE.splitlines() if line.startswith("CPU_TORCH :="))
    pinned = {Requirement(r).name: next(iter(Requirement(r).specifier)).version
              for r in cpu_line.split(":=")[1].split()}
    assert set(pinned) == {"torch", "triton"}
    for name, version in pinned.items():
        assert ranges[name].contains(version), f"the Makefile's {name}=={version} is outside pyproject's range"
    assert MAKEFILE.count("-c constraints.txt") >= 2  # the set-up and the package build


@pytest.mark.parametrize("versions, expected", [
    ({"PySide6_Essentials": "6.12.0", "transformers": "5.25.0"},
     ['pyside6-essentials==6.12.0 ; python_version >= "3.11"', 'transformers==5.25.0 ; python_version >= "3.11"']),
    ({"torch": "2.13.0+cpu", "triton": "3.9.0", "nvidia-cublas-cu12": "12.8", "cuda-bindings": "12.9",
      "tuneforge": "0.1.0", "pip": "25", "setuptools": "80", "wheel": "0.45"}, []),
    ({"zope.interface": "7.0", "Jinja2": "3.1.6", "nvidia-ml-py": "13.615.71", "nvidia-cudnn-cu13": "9.20"},
     ['jinja2==3.1.6 ; python_version >= "3.11"', 'nvidia-ml-py==13.615.71 ; python_version >= "3.11"',
      'zope-interface==7.0 ; python_version >= "3.11"']),
])
def test_render_pins_each_library_once_sorted_without_the_gpu_paired_ones(versions, expected):
    text = lock.render(versions, (3, 11))
    assert text.startswith(lock.HEADER)
    assert text[len(lock.HEADER):].splitlines() == expected
    for line in expected:
        Requirement(line)  # pip can read it


def test_lock_writes_this_environments_set_that_pip_accepts(tmp_path):
    out = tmp_path / "constraints.txt"
    done = subprocess.run([sys.executable, str(REPO / "packaging" / "lock.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = {lock.normalized(Requirement(line).name): line for line in out.read_text().splitlines()
               if line and not line.startswith("#")}
    import transformers
    assert written["transformers"].startswith(f"transformers=={transformers.__version__} ;")
    assert "torch" not in written and "tuneforge" not in written


def test_the_floor_names_the_lowest_version_of_every_library_the_app_needs_but_torch_and_triton():
    runtime = [Requirement(r) for r in lock.declared(extras=False)]
    found = dict(pin.split("==") for pin in lock.floors([str(r) for r in runtime]))
    assert set(found) == {lock.normalized(r.name) for r in runtime} - {"torch", "triton"}
    assert "pytest" not in found  # the test tools are not the app's
    for requirement in runtime:
        name = lock.normalized(requirement.name)
        if name in found:
            assert requirement.specifier.contains(found[name]), f"{name}=={found[name]} is outside {requirement}"
            assert not requirement.specifier.contains(_lower(found[name])), f"{name}'s floor is not its >= bound"
    assert lock.floors(["transformers>=5.23,<6", "peft", "gguf>=0.17.1 ; python_version >= '3.10'", "torch>=2.4",
                        "PySide6-Essentials>=6.7", "triton>=3.3; sys_platform == 'linux'"]) \
        == ["transformers==5.23", "gguf==0.17.1", "pyside6-essentials==6.7"]


def _lower(version: str) -> str:
    """A version just below `version` (its last part minus one, or a pre-release of it)."""
    parts = version.split(".")
    return ".".join(parts[:-1] + [str(int(parts[-1]) - 1)]) if int(parts[-1]) > 0 else version + "rc0"
