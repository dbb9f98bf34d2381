"""The Qt user interface (PySide6 only here)."""
