"""How much of the CPU other programs took while a run measured its pace.

A run's time per step teaches the next plan of that model its speed (history.set_calibration keeps the
last few, the plan uses their median). A pace measured while something else kept the cores busy (a
second run, a build, the test suite) is slower than the machine is, and one such run made the next plan
expect 8× the time. So the trainer measures, over the same steps as its pace, the CPU time the whole
machine spent busy less the time its own process (and its waited-for children) used: the share of the
machine's CPU time that went to others. Past OTHERS_MAX the pace is not kept; the peak memory still is,
since another program's load does not change what a step holds.

Read from /proc/stat through psutil, so it counts every program on the machine (in a container: on
the host, which is where they compete for the cores). Steal time (a hypervisor running other guests on
our cores) counts as others'; I/O wait and idle do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

# Past this share of the machine's CPU time going to other programs, a measured pace is not kept. A
# desktop at rest (browser, editor, indexer) takes a few percent; a second training run or a compile on
# a 2-core laptop takes half. A quarter slows a run that uses every core by about a third.
OTHERS_MAX = 0.25
# /proc/stat counts in ticks of 10 ms: over less CPU time than this (all cores together) a share is too coarse
# to judge by, and is not given (a tiny model's step; a real model's takes seconds).
SHORTEST_S = 0.5


@dataclass(frozen=True)
class _Snapshot:
    busy: float  # seconds all cores spent busy, since boot
    total: float  # seconds all cores existed, since boot
    own: float  # seconds this process and its waited-for children ran


def _snapshot(process: psutil.Process) -> _Snapshot:
    t = psutil.cpu_times()
    # guest time is already inside user time on Linux (psutil's documentation), so it is not added again
    total = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"))
    busy = total - t.idle - getattr(t, "iowait", 0.0)
    p = process.cpu_times()
    own = p.user + p.system + getattr(p, "children_user", 0.0) + getattr(p, "children_system", 0.0)
    return _Snapshot(busy, total, own)


class OtherLoad:
    """The share of CPU time other programs used from construction (or `restart`) to `share()`."""

    def __init__(self):
        self._process = psutil.Process()
        self.restart()

    def restart(self) -> None:
        self._start = _snapshot(self._process)

    def share(self) -> float | None:
        """0 (the machine was ours) to 1 (every core busy with others); None over too short a time to tell."""
        end = _snapshot(self._process)
        total = end.total - self._start.total
        if total < SHORTEST_S:
            return None
        others = (end.busy - self._start.busy) - (end.own - self._start.own)
        return min(1.0, max(0.0, others / total))


def pace_note(share: float | None) -> str | None:
    """Why a pace measured under this much other load is not kept (None when it is kept)."""
    if share is None or share <= OTHERS_MAX:
        return None
    return (f"other programs used {share:.0%} of the CPU while it was measured, so the next plan keeps its own "
            "estimate of the time per step")
