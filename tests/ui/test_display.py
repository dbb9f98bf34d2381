"""`tuneforge` with no display (a plain ssh session): one sentence and exit 2, not Qt's abort and core dump."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from ui.display import why_no_window


@pytest.mark.parametrize("env,platform,refused", [
    ({}, "linux", True),
    ({"DISPLAY": ":0"}, "linux", False),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),  # the person chose where Qt draws
    ({}, "win32", False),
    ({}, "darwin", False),
])
def test_a_window_needs_a_display_on_linux(env, platform, refused):
    why = why_no_window(env, platform)
    assert (why is not None) == refused
    assert why is None or why.startswith("There is no display to open the window on")


def test_the_app_without_a_display_says_so_in_one_sentence(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["TUNEFORGE_HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, str(REPO / "main.py")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("error: There is no display to open the window on")
    assert "tuneforge --help" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "qt.qpa" not in done.stderr, done.stderr
