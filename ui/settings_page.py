"""Settings: data folder, default export folder and theme, saved to a small JSON file (app.user_settings)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QVBoxLayout, QWidget)

from app import paths
from app import user_settings as us
from core.errors import KnownError
from ui import theme
from ui.error_panel import ErrorPanel

THEME_NAMES = {"system": "Follow the system", "light": "Light", "dark": "Dark"}


def hint(text: str) -> QLabel:
    return theme.muted(QLabel(text, wordWrap=True))


class FolderField(QWidget):
    """A path to type or choose; empty means the default named in the placeholder."""

    def __init__(self, caption: str, placeholder: str, parent=None):
        super().__init__(parent)
        self.caption = caption
        self.edit = QLineEdit(placeholderText=placeholder, accessibleName=caption, clearButtonEnabled=True)
        self.button = QPushButton("Choose…")
        self.button.clicked.connect(self._choose)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)
        self.setFocusProxy(self.edit)

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.caption, self.edit.text() or self.edit.placeholderText())
        if folder:
            self.edit.setText(folder)


class SettingsPage(QWidget):
    saved = Signal(object)  # the UserSettings just saved

    def __init__(self, parent=None):
        super().__init__(parent)
        self.values = us.UserSettings()
        self.data_folder = FolderField("Data folder", str(paths.default_home()))
        self.export_folder = FolderField("Export folder", "the exports folder inside the data folder")
        self.theme_combo = QComboBox(accessibleName="Theme")
        for key in us.THEMES:
            self.theme_combo.addItem(THEME_NAMES[key], key)
        self.data_note = hint("")
        self.tell_box = QCheckBox("Te&ll me when a run ends", accessibleName="Tell me when a run ends")
        form = QGridLayout()
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(4)
        form.setColumnStretch(1, 1)
        row = 0
        for caption, field, name in (("&Data folder:", self.data_folder, "data_folder"),
                                     ("&Export folder:", self.export_folder, "export_folder"),
                                     ("&Theme:", self.theme_combo, "theme"),
                                     ("Runs:", self.tell_box, "tell_when_done")):
            label = QLabel(caption)
            if field is not self.tell_box:  # a check box has its own shortcut, in its text
                label.setBuddy(field)
            field.setToolTip(us.help_for(name))
            form.addWidget(label, row, 0)
            if field in (self.theme_combo, self.tell_box):
                form.addWidget(field, row, 1, Qt.AlignLeft)
            else:
                form.addWidget(field, row, 1)
            notes = [hint(us.help_for(name))] + ([self.data_note] if name == "data_folder" else [])
            for note in notes:
                row += 1
                form.addWidget(note, row, 1)
            form.setRowMinimumHeight(row + 1, 14)  # a gap before the next setting
            row += 2
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        self.revert_button = QPushButton("Revert")
        self.revert_button.setToolTip("Show the saved settings again, dropping what you changed here.")
        self.revert_button.clicked.connect(self.load)
        self.saved_label = QLabel(textInteractionFlags=Qt.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.saved_label, 1)
        self.error = ErrorPanel()
        title = QLabel("<b>Settings</b>")
        title.setStyleSheet("font-size: 13pt;")
        content = QWidget(maximumWidth=860)  # long lines are hard to read: the form keeps a readable width
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(title)
        column.addLayout(form)
        column.addLayout(buttons)
        column.addWidget(self.error)
        column.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addWidget(content, 1)
        layout.addStretch(0)
        self.setTabOrder(self.data_folder.edit, self.data_folder.button)
        self.setTabOrder(self.data_folder.button, self.export_folder.edit)
        self.setTabOrder(self.export_folder.edit, self.export_folder.button)
        self.setTabOrder(self.export_folder.button, self.theme_combo)
        self.setTabOrder(self.theme_combo, self.tell_box)
        self.setTabOrder(self.tell_box, self.save_button)
        self.setTabOrder(self.save_button, self.revert_button)
        self.load()

    def load(self) -> None:
        """Show the saved settings; a broken file is a sentence here, and the defaults stand meanwhile."""
        self.error.clear()
        self.saved_label.clear()
        try:
            self.values = us.load()
        except KnownError as e:
            self.values = us.UserSettings()
            self.error.show_error(e)
        self._show(self.values)

    def _show(self, values: us.UserSettings) -> None:
        self.data_folder.edit.setText(values.data_folder)
        self.export_folder.edit.setText(values.export_folder)
        self.theme_combo.setCurrentIndex(max(0, self.theme_combo.findData(values.theme)))
        self.tell_box.setChecked(values.tell_when_done)
        self.data_note.setText(us.data_folder_note(values))

    def save(self) -> None:
        self.error.clear()
        self.saved_label.clear()
        try:
            values = us.UserSettings(data_folder=self.data_folder.edit.text(),
                                     export_folder=self.export_folder.edit.text(),
                                     theme=self.theme_combo.currentData(),
                                     tell_when_done=self.tell_box.isChecked())
            path = us.save(values)
        except KnownError as e:
            self.error.show_error(e)
            return
        except OSError as e:
            self.error.show_message(f"Could not save the settings to {paths.settings_path()}: {e.strerror or e}; "
                                    "check that the folder is writable.")
            return
        self.values = values
        theme.apply(values.theme)
        self._show(values)
        self.saved_label.setText(f"✔ Saved to {path}.")
        self.saved.emit(values)
