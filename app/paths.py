"""Where Tuneforge keeps its data: $TUNEFORGE_HOME, else the data folder chosen in Settings, else the
platform's user data folder.

The Settings file (app/user_settings.py) lives outside the data folder it chooses: beside
$TUNEFORGE_HOME when that is set (a self-contained home: tests, portable installs), else in the
platform's config folder, or wherever $TUNEFORGE_SETTINGS points.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESOURCES = REPO / "resources"
DEMO_DATA = RESOURCES / "demo" / "pirate_chat.jsonl"

_UNREAD = object()
_chosen_home: object = _UNREAD  # the Settings' data folder, read once: a change applies at the next start


def home() -> Path:
    override = os.environ.get("TUNEFORGE_HOME")
    if override:
        path = Path(override).expanduser()
    else:
        path = chosen_home() or default_home()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("Tuneforge", appauthor=False))


def chosen_home() -> Path | None:
    """The data folder from the Settings file as this process started, or None (unset or unreadable: the
    Settings page says what is wrong with the file)."""
    global _chosen_home
    if _chosen_home is _UNREAD:
        try:
            folder = json.loads(settings_path().read_text(encoding="utf-8")).get("data_folder")
        except (OSError, ValueError, AttributeError):
            folder = None
        _chosen_home = Path(folder).expanduser() if isinstance(folder, str) and os.path.isabs(
            os.path.expanduser(folder)) else None
    return _chosen_home


def settings_path() -> Path:
    explicit = os.environ.get("TUNEFORGE_SETTINGS")
    if explicit:
        return Path(explicit).expanduser()
    override = os.environ.get("TUNEFORGE_HOME")
    if override:
        return Path(override).expanduser() / "settings.json"
    import platformdirs

    return Path(platformdirs.user_config_dir("Tuneforge", appauthor=False)) / "settings.json"


def db_path() -> Path:
    return home() / "history.sqlite"


def models_dir() -> Path:
    return home() / "models"


def runs_dir() -> Path:
    return home() / "runs"


def run_dir(run_id: str) -> Path:
    return runs_dir() / run_id
