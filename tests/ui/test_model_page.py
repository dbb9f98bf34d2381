"""The model step: the list of models on this machine fills in the background, a click or Enter picks a row,
and a dropped .gguf file or folder is taken as the model. A real HF cache layout in tmp_path, real app code."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from tests.core.test_model_source import cache_repo
from ui import tasks
from ui.pages.base import Session
from ui.pages.model_list import COLUMNS, FIT
from ui.pages.model_page import ModelPage


def tiny_model_files(tmp_path) -> dict[str, bytes]:
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, LlamaConfig

    saved = tmp_path / "saved"
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(saved)
    Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]")).save(str(saved / "tokenizer.json"))
    return {f.name: f.read_bytes() for f in saved.iterdir()}


def drag(page, path, accepted: bool) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(20, 20),  # Qt's enter event takes a QPoint, its drop a QPointF
                            Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(page, enter)
    assert enter.isAccepted() == accepted
    if accepted:
        QApplication.sendEvent(page, QDropEvent(QPointF(20, 20), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))


def test_list_fills_and_a_click_enter_or_drop_picks_the_model(qtbot, home, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    files = tiny_model_files(tmp_path)
    for repo in ("tiny-org/first", "tiny-org/second", "tiny-org/third"):
        cache_repo(cache, repo, files)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    page = ModelPage(Session(model_name="tiny-org/first"))
    qtbot.addWidget(page)
    page.resize(1000, 700)
    page.show()
    page.initializePage()  # as the wizard does when the step opens: list, and resolve what is typed
    qtbot.waitUntil(lambda: page.models.topLevelItemCount() == 4 and not page.busy("catalog"), timeout=15000)
    qtbot.waitUntil(page.isComplete, timeout=10000)

    header = page.models.headerItem()
    assert [header.text(i) for i in range(len(COLUMNS))] == list(COLUMNS)
    rows = [page.models.topLevelItem(i) for i in range(4)]
    assert [(r.text(0), r.text(1)) for r in rows] == [("SmolLM2-135M-Instruct", "bundled"), ("first", "HF cache"),
                                                     ("second", "HF cache"), ("third", "HF cache")]
    assert rows[1].text(4) == "llama" and rows[1].text(5) == "128" and rows[0].text(5) == "8,192"
    assert all(r.text(FIT).startswith(("fits", "CPU only")) for r in rows)  # tiny models fit any machine
    assert page.models.currentItem() is rows[1]  # the current model's row is selected
    assert "first" in page.details.text() and "per 1,000 rows" in page.details.text()

    qtbot.mouseClick(page.models.viewport(), Qt.LeftButton, pos=page.models.visualItemRect(rows[2]).center())
    assert page.model_edit.text() == "tiny-org/second"
    qtbot.waitUntil(page.isComplete, timeout=10000)
    assert page.name_label.text() == "second" and page.models.currentItem() is rows[2]

    assert page.browse_button.nextInFocusChain() is page.models  # Tab reaches the list
    page.models.setFocus()
    page.models.setCurrentItem(rows[3])  # moving with the arrows only selects
    assert page.model_edit.text() == "tiny-org/second"
    qtbot.keyClick(page.models, Qt.Key_Return)
    assert page.model_edit.text() == "tiny-org/third"
    qtbot.waitUntil(page.isComplete, timeout=10000)

    drag(page, tmp_path / "saved" / "config.json", accepted=False)  # neither a folder nor a .gguf
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"not really a gguf")
    drag(page, gguf, accepted=True)
    assert page.model_edit.text() == str(gguf) and page.models.currentItem() is None
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=15000)  # resolved at once, and refused in words
    assert "is not a GGUF file" in page.error.message
    blob = tmp_path / "sha256-0a1b2c"  # as Ollama keeps a model: no suffix, known by its first bytes
    blob.write_bytes(b"GGUF" + bytes(20))
    drag(page, blob, accepted=True)
    assert page.model_edit.text() == str(blob)
    page.shutdown()
    assert tasks.wait_idle(15000)
