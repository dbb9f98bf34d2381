"""The writer streams into a temporary file and renames it at the end: a full disk is refused before
anything is written, and a cancel or a failure half-way leaves nothing behind."""

import pytest

from core.errors import DiskFull
from core.gguf_export import writer
from core.progress import Cancelled, Progress
from tests.core.gguf_export import tiny

LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="module")
def model_and_plan(tmp_path_factory):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path_factory.mktemp("tok")))
    model = tiny.random_model("llama", tok, **LLAMA)
    return model, tiny.plan(model, tok, "q8_0")


def test_the_planned_size_is_the_written_size(model_and_plan, tmp_path):
    model, plan = model_and_plan
    path = writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    assert abs(path.stat().st_size - plan.size()) < 80_000
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_not_enough_disk_is_refused_before_writing(model_and_plan, tmp_path, monkeypatch):
    import collections

    model, plan = model_and_plan
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(writer.shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 1_000_000, 1_000_000))
    with pytest.raises(DiskFull, match=r"^Not enough disk space for the GGUF file: it needs about \d+ MB in .*, which "
                                       r"has 1 MB free; free some space or export to another disk\.$"):
        writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    assert list(tmp_path.iterdir()) == []


def test_cancel_leaves_nothing(model_and_plan, tmp_path):
    model, plan = model_and_plan
    progress = Progress(lambda fraction, text: fraction and fraction > 0.5 and progress.cancel())
    with pytest.raises(Cancelled):
        writer.write(plan, model.state_dict(), tmp_path / "m.gguf", progress)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_half_way_leaves_no_file(model_and_plan, tmp_path):
    model, plan = model_and_plan

    class Failing(dict):
        def __getitem__(self, name):
            if ".1." in name:
                raise OSError("the source disappeared")
            return super().__getitem__(name)

    with pytest.raises(OSError, match="disappeared"):
        writer.write(plan, Failing(model.state_dict()), tmp_path / "m.gguf", Progress())
    assert list(tmp_path.iterdir()) == []


def test_memory_holds_one_converted_tensor_at_a_time(tmp_path):
    """Streaming: the writer's own allocations peak near a few copies of the largest tensor, far below the
    whole converted model (numpy reports its buffers to tracemalloc)."""
    import tracemalloc

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "tok"))
    model = tiny.random_model("llama", tok, hidden_size=256, intermediate_size=512, num_hidden_layers=6,
                              num_attention_heads=4, num_key_value_heads=4)
    plan = tiny.plan(model, tok, "f32")
    state = model.state_dict()
    largest = max(t.nbytes for t in plan.tensors)
    tracemalloc.start()
    writer.write(plan, state, tmp_path / "m.gguf", Progress())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = sum(t.nbytes for t in plan.tensors)
    assert total > 15 * largest and peak < 4 * largest + (2 << 20), (peak, largest, total)
