"""The leaderboard's user-facing error (a bad or foreign database, an unknown run id, missing artifacts)."""


class BoardError(Exception):
    """A one-line, user-facing leaderboard problem; the message names the file or run concerned."""
