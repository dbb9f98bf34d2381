"""Whether this process can open a window at all, asked before Qt is: without a display, Qt's xcb plugin fails
inside QApplication and aborts the process (a core dump and a paragraph about platform plugins), which is what a
person who typed `tuneforge` over a plain ssh connection to their GPU workstation would see. No Qt here."""

from __future__ import annotations

import os
import sys


def why_no_window(env: dict | None = None, platform: str | None = None) -> str | None:
    """One sentence when there is no display to open the window on (Linux only; None when there may be one)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):  # elsewhere, or the person chose a platform
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return ("There is no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set, as over a "
            "plain ssh connection): use the command line instead (`tuneforge --help`; e.g. `tuneforge train "
            "--model default --data FILE`), or connect with a display (ssh -X).")
