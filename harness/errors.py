"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit."""

from leaderboard.errors import BoardError
from tasks.errors import DataError


class HarnessError(Exception):
    """A user-facing problem (bad flag, missing path, broken submission...). One-line message."""


#: every exception type whose message is meant for the user as is
USER_ERRORS: tuple[type[BaseException], ...] = (HarnessError, DataError, BoardError)
