"""Where Tuneforge keeps its data: the platform's user data folder, or $TUNEFORGE_HOME."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESOURCES = REPO / "resources"
DEMO_DATA = RESOURCES / "demo" / "pirate_chat.jsonl"


def home() -> Path:
    override = os.environ.get("TUNEFORGE_HOME")
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("Tuneforge", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return home() / "history.sqlite"


def models_dir() -> Path:
    return home() / "models"


def runs_dir() -> Path:
    return home() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_dir() / run_id
