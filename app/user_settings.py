"""The person's settings: data folder, default export folder, theme and whether to be told when a run ends, in a
small JSON file.

The file is written atomically (core.atomic) where app.paths.settings_path() says. The data folder is
read by app.paths when the process starts (the CLI too), so a change applies at the next start; the
export folder and the theme apply at once.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from app import paths
from core import atomic, settings
from core.errors import BadArgument
from core.settings import check, option

THEMES = ("system", "light", "dark")


@dataclass
class UserSettings:
    data_folder: str = option("", help="Where models, runs and the history are kept. Empty: the platform's user "
                                       "data folder. Applies the next time Tuneforge starts; the TUNEFORGE_HOME "
                                       "environment variable, when set, wins over it.")
    export_folder: str = option("", help="Where exports are saved unless you pick another folder on the export "
                                         "page. Empty: the exports folder inside the data folder.")
    theme: str = option("system", help="The colours of the window: 'light', 'dark', or 'system' to follow the "
                                       "system's setting.")
    tell_when_done: bool = option(True, help="When a run ends while Tuneforge's window is in the background, the "
                                             "window asks for attention (its taskbar entry flashes) and a desktop "
                                             "notification says how the run ended.")

    def __post_init__(self):
        check(self.theme in THEMES, "theme", f"'{self.theme}' is not one of {', '.join(THEMES)}; pick one of them.")
        check(isinstance(self.tell_when_done, bool), "tell_when_done",
              f"expected true or false, found {self.tell_when_done!r}.")
        for name in ("data_folder", "export_folder"):
            value = getattr(self, name)
            check(isinstance(value, str), name, f"expected a folder path in quotes, found {value!r}.")
            folder = os.path.expanduser(value.strip())
            check(not folder or os.path.isabs(folder), name,
                  f"'{value}' is not a full path; give one like {Path.home() / 'tuneforge'}, or leave it empty "
                  "for the default.")
            check(not folder or not Path(folder).exists() or Path(folder).is_dir(), name,
                  f"'{value}' is a file, not a folder; choose a folder.")
            setattr(self, name, folder)


def help_for(name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(UserSettings) if f.name == name)


def load() -> UserSettings:
    """The saved settings, the defaults when there is no file, or a BadArgument naming the file and the fix."""
    path = paths.settings_path()
    if not path.is_file():
        return UserSettings()
    data = settings.read_json_object(path)
    try:
        return settings.from_dict(UserSettings, data, source=str(path))
    except BadArgument as e:  # name the file, once
        text = str(e)
        raise BadArgument(text if text.startswith(str(path)) else f"{path}: {text[:1].lower()}{text[1:]}") from None


def save(values: UserSettings) -> Path:
    return atomic.write_json(paths.settings_path(), settings.to_dict(values))


def export_folder(values: UserSettings | None = None) -> Path:
    """Where exports go by default: the setting, or the data folder's exports/."""
    if values is None:
        try:
            values = load()
        except BadArgument:
            values = UserSettings()
    return Path(values.export_folder) if values.export_folder else paths.home() / "exports"


def data_folder_note(values: UserSettings) -> str:
    """One sentence on which data folder is in use and why, for the Settings page."""
    in_use = paths.home()
    if os.environ.get("TUNEFORGE_HOME"):
        return f"In use now: {in_use} (set by the TUNEFORGE_HOME environment variable, which wins over this setting)."
    wanted = Path(values.data_folder) if values.data_folder else paths.default_home()
    if wanted != in_use:
        return f"In use now: {in_use}; {wanted} is used from the next start."
    return f"In use now: {in_use}."
