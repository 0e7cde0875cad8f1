"""The root click group that every command module attaches to."""

import click

from harness import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="unlearn-harness")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Package, check, run, score and rank SemEval-2025 Task 4 unlearning submissions.

    Scores are computed exactly like the official (V3) scorer; see README.md.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
