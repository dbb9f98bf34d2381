"""Tuneforge: `python main.py` opens the app; `python main.py VERB ...` is the command line."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
