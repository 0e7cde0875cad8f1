"""CLI commands: board (placeholder until implemented)."""

from harness.cli._group import cli  # noqa: F401
