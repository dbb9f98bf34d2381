"""A progress bar for terminals, fed by trainer events or a Progress; plain lines when not a TTY."""

from __future__ import annotations

import shutil
import sys

from core import objectives
from core.progress import Progress


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def bar(fraction: float, width: int = 24) -> str:
    """[#######.........]  42%"""
    filled = int(width * min(1.0, max(0.0, fraction)))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


class TerminalProgress:
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.open_line = False
        self.last_fraction: tuple[str, int] | None = None
        self.share = objectives.share_words("")  # what a preference run's share is called (the start event says)

    def _line(self, text: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + text[:width].ljust(width))
            self.open_line = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _fraction(self, fraction: float, text: str) -> None:
        """A bar; in a log (not a TTY) only when the text changes or another tenth is done, not every update."""
        tenth = int(fraction * 10)
        if not self.tty and (text, tenth) == self.last_fraction:
            return
        self.last_fraction = (text, tenth)
        self._line(f"{bar(fraction)} {text}")

    def note(self, text: str) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def event(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "start":
            self.share = objectives.share_words(e.get("objective") or "")
        if kind == "step":
            done, total = e["step"], e["total_steps"]
            self._line(f"{bar(done / max(1, total))} step {done}/{total}  loss {e['loss']:.4f}  "
                       + (f"{self.share[0].lower()} {e['prefers']:.0%}  " if e.get("prefers") is not None else "")
                       + f"{e['tokens_per_s']:.0f} tok/s  ETA {format_duration(e.get('eta_s'))}")
        elif kind == "status" and e.get("fraction") is not None:
            self._fraction(e["fraction"], e.get("text", ""))
        elif kind == "eval":
            self.note(f"validation loss at step {e['step']}: {e['loss']:.4f}"
                      + (" (the lowest so far)" if e.get("lowest") else "")
                      + (f"; {self.share[0].lower()}: {e['prefers']:.0%} of the validation {self.share[1]}s"
                         if e.get("prefers") is not None else ""))
        elif kind in ("status", "error"):
            self.note(e.get("text", ""))
        elif kind == "replan":
            self.note(f"{e['text']} Continuing from the last checkpoint.")
        elif kind == "calibration" and e.get("factor"):
            self.note(f"measured peak memory: {e['factor']:.2f}× the plan's estimate"
                      + (f"; its pace is not kept: {e['pace_note']}" if e.get("pace_note") else ""))
        elif kind == "checkpoint" and not self.tty:
            self.note(f"checkpoint at step {e['step']}")

    def as_progress(self) -> Progress:
        def show(fraction, text):
            if fraction is None:
                self._line(text)
            else:
                self._fraction(fraction, text)
        return Progress(show)

    def close(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False
