"""The History view: runs from the local history, one run opened, two runs compared."""
