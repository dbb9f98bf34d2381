"""Read a GGUF file once where transformers reads it three times.

transformers' GGUF loader (the independent reader our import and our export's verification rely on) parses the
whole file with gguf's GGUFReader for a config, again inside AutoTokenizer (which rebuilds the config to pick
its tokenizer class), and again for the weights; each parse takes 3-4 s on the default model's 49,152-token
vocabulary, whatever the model's size. Loading the weights, it also builds gguf's tensor-name map anew for every
module of the model (about 400 on the default model: 6 s).

Inside `parsed_once()` the same libraries' code runs, fewer times: gguf's reader is made once per file, the
metadata transformers draws from it once per file (each caller gets its own copy), and the name map once per
architecture and depth. Measured on an f16 export of the default model, its verification took 24.5 s before.
Where a library version lacks a function replaced here, that part is left as it is: only the time changes.
The replacements are the libraries' module attributes, so one thread at a time holds them (`_HELD`): two
threads' contexts interleaved would put back each other's replacements, not the originals.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import threading

_HELD = threading.RLock()


@contextlib.contextmanager
def parsed_once():
    with _HELD:
        replaced = _replace()
        try:
            yield
        finally:
            for module, name, original in reversed(replaced):
                setattr(module, name, original)


def _replace() -> list[tuple]:
    """Put the read-once stand-ins in place; (module, name, original) for each replaced."""
    replaced = []
    try:
        import gguf
    except ImportError:
        gguf = None
    if gguf is not None and isinstance(getattr(gguf, "GGUFReader", None), type):
        replaced.append((gguf, "GGUFReader", gguf.GGUFReader))
        gguf.GGUFReader = _kept_readers(gguf.GGUFReader)
    if gguf is not None and callable(getattr(gguf, "get_tensor_name_map", None)):
        replaced.append((gguf, "get_tensor_name_map", gguf.get_tensor_name_map))
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map)
    try:
        from transformers import modeling_gguf_pytorch_utils as loader

        replaced.append((loader, "load_gguf_checkpoint", loader.load_gguf_checkpoint))
        loader.load_gguf_checkpoint = _metadata_once(loader.load_gguf_checkpoint)
    except (ImportError, AttributeError):
        pass
    return replaced


def _kept_readers(reader_class: type) -> type:
    """A stand-in for gguf's reader class that makes one reader per (file, mode) and hands it out again. (Its
    __new__ returns the real class's object, so Python does not run __init__ a second time on it.)"""
    made: dict = {}

    class Kept(reader_class):
        def __new__(cls, path, mode="r"):
            key = (os.path.realpath(os.fspath(path)), mode)
            if key not in made:
                made[key] = reader_class(path, mode)
            return made[key]

    return Kept


def _metadata_once(load):
    """transformers' load_gguf_checkpoint, its metadata-only calls (a config's, a tokenizer's) answered from the
    first one's result, a copy each; calls for tensors or to fill a model go through."""
    parsed: dict = {}

    def once(path, return_tensors=False, **kwargs):
        if return_tensors or kwargs:
            return load(path, return_tensors, **kwargs)
        key = os.path.realpath(os.fspath(path))
        if key not in parsed:
            parsed[key] = load(path, return_tensors=False)
        return copy.deepcopy(parsed[key])

    return once
