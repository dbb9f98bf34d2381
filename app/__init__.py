"""Wiring: paths and settings, the operations the CLI and the UI share, the trainer supervisor."""
