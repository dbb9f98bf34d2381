"""The desktop window (Qt). It calls the plain functions in `app/`, never the trainer's internals.

Long work goes through `ui.tasks.run_task`, so the UI thread only ever draws and reacts.
"""
