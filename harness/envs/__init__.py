"""Other Python environments the harness runs its own code in: the organisers' pinned one (official.py)."""
