"""CLI command `audit`: the robustness audit of a checkpoint (harness.audit), as a table or as JSON.

``unlearn-harness audit CHECKPOINT --task NAME`` runs the attacks (quantization, relearning, probes, the
MIA panel, extraction strength), writes audit.json into the run directory and prints the headline
"robust forget" beside the official forget knowledge term, with what each attack brought back.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.cli._group import cli
from harness.errors import HarnessError


def _default_run_dir(checkpoint: Path, task: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{checkpoint.resolve().name}-{task}")
    return Path("runs") / "audits" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:+.3f}" if isinstance(value, float) else str(value)


def _render(data: dict, console: Console) -> None:
    table = Table(title=f"audit of {data['checkpoint']} on {data['task']}")
    for column in ("attack", "forget knowledge back", "forget regurgitation back", "seconds"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    know, reg = data["recovered"]["forget_knowledge"], data["recovered"]["forget_regurgitation"]
    for name in dict.fromkeys([*know, *reg]):  # the attacks in the audit's order
        seconds = data["timings"].get(name.split(":")[0])
        table.add_row(name, _fmt(know.get(name)), _fmt(reg.get(name)), f"{seconds:.1f}" if seconds else "-")
    console.print(table)
    share = ((data.get("relearn") or {}).get("share_of_hidden") or {}).get("forget_knowledge")
    if share is not None:
        console.print(
            f"relearning brought back {share:.0%} of the held-out forget knowledge it hides (the target's minus its own)"
        )
    mia = (data.get("mia_panel") or {}).get("auc", {}).get("checkpoint")
    if mia:
        console.print("MIA panel AUC: " + ", ".join(f"{k} {v:.3f}" for k, v in mia.items()))
    extraction = (data.get("extraction") or {}).get("mean", {}).get("checkpoint")
    if extraction is not None:
        console.print(f"extraction strength (mean over forget rows' tasks): {extraction:.3f}")
    interval = data["official_forget_interval"]
    official = "-" if data["official_forget"] is None else f"{data['official_forget']:.3f}"
    if interval:
        official += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    robust = "-" if data["robust_forget"] is None else f"{data['robust_forget']:.3f}"
    console.print(
        f"official forget (knowledge): {official}   robust forget: {robust} (worst: {data['worst_attack']})"
    )


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--task", "task_name", required=True, help="Task to audit CHECKPOINT on (see `unlearn-harness tasks`)."
)
@click.option(
    "--attack",
    "attacks",
    multiple=True,
    type=click.Choice(["quantize", "relearn", "probes", "mia_panel", "extraction"]),
    help="Run only this attack (repeatable) [default: all].",
)
@click.option(
    "--quant-backend",
    type=click.Choice(["auto", "bnb", "sim"]),
    default="auto",
    show_default=True,
    help="bitsandbytes kernels, the torch simulation, or bnb where usable.",
)
@click.option("--device", help="cpu, cuda, cuda:1 ... [default: cuda when available].")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Where audit.json and the artifacts go.")
@click.option("--json", "as_json", is_flag=True, help="Print audit.json on stdout.")
def audit(
    checkpoint: Path,
    task_name: str,
    attacks: tuple[str, ...],
    quant_backend: str,
    device: str | None,
    run_dir: Path | None,
    as_json: bool,
) -> None:
    """Audit CHECKPOINT on --task: is the forget set forgotten, or only hidden?

    Exit status 1 when an attack could not run (one line each on stderr; the others are in audit.json).

    \b
    unlearn-harness audit runs/tiny/<run>/out --task tiny
    unlearn-harness audit out/checkpoint --task tiny --attack relearn --json
    """
    from harness.audit import audit as run_audit
    from tasks.registry import get_task

    if not checkpoint.is_dir():
        raise HarnessError(f"{checkpoint}: checkpoint directory not found")
    task = get_task(task_name)
    run_dir = run_dir or _default_run_dir(checkpoint, task_name)
    result = run_audit(
        checkpoint,
        task,
        run_dir,
        attacks=list(attacks) or None,
        progress=True,
        backend=quant_backend,
        device=device,
    )
    data = result.to_json()
    for line in data["notes"]:
        click.echo(f"note: {line}", err=True)
    for name, line in data["errors"].items():
        click.echo(f"error: {name}: {line}", err=True)
    if as_json:
        click.echo(json.dumps(data))
    else:
        console = Console(highlight=False)
        _render(data, console)
        console.print(f"audit.json: {run_dir / 'audit.json'}")
    if data["errors"]:  # the other attacks ran and are in audit.json; the exit status says it is partial
        raise SystemExit(1)
