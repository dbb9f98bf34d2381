"""The models that answer in the app's "Try it" box, kept loaded from one question to the next.

Loading is most of the wait for an answer: seconds for the default model, a minute for an 8B model read
from disk, and the box asks two models (the base and the tuned one) every time. So the app keeps the last
KEEP models it loaded, the base and the tuned model of the run being tried, and answers the next
question at once. The command line's `chat` asks once and keeps nothing.

What is kept holds RAM (or GPU memory), so it is let go where that memory is wanted for something else:
when a run is planned or started (a trainer planned beside a model the app holds could run out of
memory), when a run is exported (a merge, and the GGUF check's two copies), and when the page that asked
closes; the conversations stay, and the next question loads the models again. A result trained again since
it was loaded (resumed and finished, so its files changed) is loaded again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

KEEP = 2  # the base model and the tuned one, side by side

_lock = threading.Lock()
_kept: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (model, tokenizer), oldest first
_releases = 0  # counts release() calls: a load that began before one is not kept


def key(model_path: str | Path, strategy: str | None = None, result: str | Path | None = None) -> tuple:
    """What identifies a loaded model: its base, its strategy and its result as the files are now."""
    stamp = None
    if result is not None and Path(result).is_dir():
        stamp = max((f.stat().st_mtime_ns for f in Path(result).rglob("*") if f.is_file()), default=0)
    return str(model_path), strategy, str(result) if result is not None else None, stamp


def get(model_path: str | Path, strategy: str | None = None, result: str | Path | None = None, progress=None):
    """(model, tokenizer), loaded by core.inference.load the first time and kept for the next question."""
    from core import inference

    wanted = key(model_path, strategy, result)
    with _lock:
        if wanted in _kept:
            _kept.move_to_end(wanted)
            return _kept[wanted]
        started = _releases
    loaded = inference.load(model_path, strategy, result, progress)
    with _lock:
        if started == _releases:
            stale = [k for k in _kept if k[:3] == wanted[:3]]  # the same result, trained again since
            for k in stale:
                del _kept[k]
            _kept[wanted] = loaded
            while len(_kept) > KEEP:
                _kept.popitem(last=False)
    return loaded


def kept() -> int:
    """How many models are held now."""
    with _lock:
        return len(_kept)


def release() -> int:
    """Let every kept model go (and the GPU memory torch cached for them); returns how many there were."""
    global _releases
    with _lock:
        count = len(_kept)
        _kept.clear()
        _releases += 1
    if count:
        import gc
        import sys

        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return count
