"""The README's "Writing your own entry" guide, followed step by step on the tiny task.

The commands are read from the README section itself (its ```bash lines run one by one in a shell, its
```diff block is applied to the copied file), so the guide cannot drift from what works. `<NAME run id>`
stands for the run id of the run recorded under variant NAME, as the guide tells the reader to look it
up on the board.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import background
import pytest

REPO = Path(__file__).resolve().parents[1]
TITLE = "## Writing your own entry"
#: the background job that follows the guide (`test_following_the_guide_on_the_tiny_task`)
GUIDE_JOB = "new-entry-guide"
SHA = re.compile(r"checkpoint\s+sha256 ([0-9a-f]{16})")


def guide_steps(readme: Path = REPO / "README.md") -> list[tuple[str, str]]:
    """("bash", command line) and ("diff", patch text) in the order of the guide."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(TITLE + "\n")
    end = text.find("\n## ", start + len(TITLE))
    section = text[start : end if end != -1 else len(text)]
    steps: list[tuple[str, str]] = []
    for lang, body in re.findall(r"^```(\w+)\n(.*?)^```$", section, flags=re.M | re.S):
        if lang == "diff":
            steps.append(("diff", body))
        elif lang == "bash":
            steps += [
                ("bash", line) for line in body.splitlines() if line.strip() and not line.startswith("#")
            ]
    return steps


def apply_diff(patch: str, root: Path) -> Path:
    """Apply the guide's diff (--- old / +++ new, hunks of context, - and + lines) to a copy of the old
    file at the new path. Each hunk's old lines must occur exactly once."""
    lines = patch.splitlines()
    new_name = next(line[4:].strip() for line in lines if line.startswith("+++ "))
    target = root / new_name
    text = target.read_text(encoding="utf-8")
    hunks, current = [], None
    for line in lines:
        if line.startswith(("--- ", "+++ ")):
            continue
        if line.startswith("@@"):
            current = ([], [])
            hunks.append(current)
            continue
        assert current is not None, f"diff line outside a hunk: {line!r}"
        mark, content = line[:1], line[1:]
        if mark in (" ", "-"):
            current[0].append(content)
        if mark in (" ", "+"):
            current[1].append(content)
    for old, new in hunks:
        before, after = "\n".join(old) + "\n", "\n".join(new) + "\n"
        assert text.count(before) == 1, f"{new_name}: the guide's hunk does not match once:\n{before}"
        text = text.replace(before, after)
    target.write_text(text, encoding="utf-8")
    return target


def _run_ids(folder: Path) -> dict[str, str]:
    from leaderboard.store import Store, default_db

    return {r.variant: r.run_id for r in Store(default_db(folder / "runs")).records() if r.role == "entry"}


def follow_guide(folder: Path) -> list[dict[str, object]]:
    """Follow the guide in ``folder`` (a copy of submissions/ is made there), step by step, until a step
    fails: for each step its kind and command, and for a command its exit status and output."""
    shutil.copytree(
        REPO / "submissions", folder / "submissions", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k != "UNLEARN_HARNESS_RESULTS"}
    env.update(
        HF_HUB_OFFLINE="1",
        COLUMNS="200",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    if not shutil.which("unlearn-harness", path=env["PATH"]):
        return [{"kind": "setup", "command": "", "returncode": 1, "stdout": "",
                 "stderr": "unlearn-harness is not installed next to python"}]  # fmt: skip
    steps: list[dict[str, object]] = []
    for kind, step in guide_steps():
        if kind == "diff":
            entry = apply_diff(step, folder)
            changed = entry.read_text() != (folder / "submissions" / "grad_diff.py").read_text()
            steps.append({"kind": "diff", "command": str(entry), "returncode": 0 if changed else 1,
                          "stdout": "", "stderr": "" if changed else "the diff changed nothing"})  # fmt: skip
        else:
            command = re.sub(r"<(\S+) run id>", lambda m: _run_ids(folder)[m.group(1)], step)
            done = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=600
            )
            steps.append({"kind": "bash", "command": command, "returncode": done.returncode,
                          "stdout": done.stdout, "stderr": done.stderr})  # fmt: skip
        if steps[-1]["returncode"] != 0:
            break
    return steps


def _guide_job(folder: Path) -> tuple[list[str], dict[str, str]]:
    """This file as a script: the guide followed in ``folder`` (a background job), its steps in steps.json.
    Where the session's cold run builds the tiny world, the script waits for that build first."""
    return [sys.executable, __file__, str(folder / "work")], dict(os.environ)


def test_the_guide_has_every_step() -> None:
    # what each step is: "diff", or the command's verb (cp, or the unlearn-harness command)
    verbs = [
        "diff"
        if kind == "diff"
        else step.split()[1]
        if step.startswith("unlearn-harness ")
        else step.split()[0]
        for kind, step in guide_steps()
    ]
    assert verbs[:3] == ["cp", "diff", "check"] and verbs.count("diff") == 1  # copy, change the loss, check
    assert verbs.index("check") < verbs.index("run") < verbs.index("board") < verbs.index("pack")
    assert verbs[-1] == "check"  # the packed file is checked last


@pytest.mark.slow
@pytest.mark.background(GUIDE_JOB, _guide_job)
def test_following_the_guide_on_the_tiny_task() -> None:
    """The whole guide, about 100 s of subprocesses: a background job (tests/background.py) that runs
    beside the rest of the suite from its start; here its steps are checked."""
    done = background.wait(GUIDE_JOB, _guide_job, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = done.folder / "work"
    steps = json.loads((folder / "steps.json").read_text(encoding="utf-8"))
    shas: dict[str, list[str]] = {"check": [], "run": []}
    for step in steps:
        command, out = str(step["command"]), str(step["stdout"])
        assert step["returncode"] == 0, f"{command}\n{out[-3000:]}\n{str(step['stderr'])[-3000:]}"
        words = command.split()
        if words[:2] in (["unlearn-harness", "check"], ["unlearn-harness", "run"]):
            shas[words[1]] += SHA.findall(out)
        if words[:2] == ["unlearn-harness", "check"]:
            assert "ready for an official attempt" in out
        if words[:3] == ["unlearn-harness", "board", "compare"]:
            assert "B compared with A" in out and words[3] in out and words[4] in out
        if words[:2] == ["unlearn-harness", "pack"]:
            assert "embedded module unlearn_common" in out
    assert len(steps) == len(guide_steps())  # every step ran: the job stops at the first that fails
    ids = _run_ids(folder)
    assert set(ids) == {"baseline", "capped"}
    # the changed loss changed the checkpoint; the packed file dry-runs to the original's checkpoint
    assert len(shas["run"]) == 2 and shas["run"][0] != shas["run"][1]
    assert len(shas["check"]) == 2 and shas["check"][0] == shas["check"][1] == shas["run"][1]


if __name__ == "__main__":  # the background job of the test above
    work = Path(sys.argv[1])
    work.mkdir()
    if cache := os.environ.get("UNLEARN_HARNESS_CACHE"):
        background.wait_for_the_cold_build(Path(cache))  # else its first dry run could build the world first
    (work / "steps.json").write_text(json.dumps(follow_guide(work)), encoding="utf-8")
