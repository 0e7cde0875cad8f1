"""`pack`: one file with the sibling modules embedded, each in its own namespace; it checks and runs the same."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_runner import SUBMISSIONS, mini_task  # noqa: F401  (the module-scoped mini task fixture)

from harness.cli import main
from harness.contract import check_submission
from harness.errors import HarnessError
from harness.pack import pack
from harness.runner import run_submission


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def run_python(folder: Path, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_siblings_keep_their_namespaces(tmp_path):
    src = tmp_path / "src"
    write(src, "helper.py", '"""helper"""\nSECRET = "helper-only"\n\ndef twice(x):\n    return 2 * x\n')
    write(src, "tools/__init__.py", "from .maths import square\n")
    write(src, "tools/maths.py", "def square(x):\n    return x * x\n")
    write(
        src,
        "entry.py",
        '''
        """My entry."""

        from __future__ import annotations

        import helper
        from tools import square


        def unlearn(model_dir, output_dir, forget_dir, retain_dir, x: int = 3):
            return helper.twice(x) + square(x)
        ''',
    )
    report = pack(src / "entry.py", tmp_path / "dist" / "entry.py")
    assert set(report.embedded) == {"helper", "tools", "tools.maths"}
    assert report.check is not None and report.check.ok and report.check.problems == []
    packed = (tmp_path / "dist" / "entry.py").read_text()
    assert packed.startswith('"""My entry."""\n\nfrom __future__ import annotations\n')
    out = run_python(
        tmp_path / "dist",
        "import sys, entry; print(entry.unlearn('m', 'o', 'f', 'r'), entry.helper.__name__, "
        "hasattr(entry, 'SECRET'), sys.modules['tools.maths'].square(4))",
    )
    assert out == "15 helper False 16"


def test_packages_to_request_are_reported(tmp_path):
    write(tmp_path, "lora.py", "import peft\n")
    write(tmp_path, "entry.py", "import lora\n\ndef unlearn(m, o, f, r):\n    pass\n")
    report = pack(tmp_path / "entry.py", tmp_path / "packed.py")
    assert report.requested_packages == ["peft"]
    recheck = check_submission(tmp_path / "packed.py")
    assert recheck.requested_packages == {"peft": "peft"}  # found inside the embedded module too
    assert recheck.warnings[0].path == "<packed>/lora.py"


def test_no_siblings_is_a_plain_copy(tmp_path):
    source = "import json\n\ndef unlearn(m, o, f, r):\n    pass\n"
    write(tmp_path, "entry.py", source)
    pack(tmp_path / "entry.py", tmp_path / "packed.py")
    assert (tmp_path / "packed.py").read_text() == source


def test_refuses_broken_or_self(tmp_path):
    write(tmp_path, "bad.py", "def unlearn(m, o):\n    pass\n")
    with pytest.raises(HarnessError, match="cannot pack: .*takes 2 positional parameters"):
        pack(tmp_path / "bad.py", tmp_path / "out.py")
    assert not (tmp_path / "out.py").exists()
    write(tmp_path, "ok.py", "def unlearn(m, o, f, r):\n    pass\n")
    with pytest.raises(HarnessError, match="refusing to overwrite"):
        pack(tmp_path / "ok.py", tmp_path / "ok.py")


def test_packed_dry_run_gives_the_same_checkpoint(mini_task, tmp_path, capsys):  # noqa: F811
    packed = tmp_path / "dist" / "entry.py"
    with pytest.raises(SystemExit) as exit_info:
        main(["pack", str(SUBMISSIONS / "good.py"), "-o", str(packed)])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert (
        "embedded module _fixture_io" in printed
        and "packages to request on the submission form: none" in printed
    )
    kwargs = {"results_root": tmp_path / "runs", "progress": False, "score": False, "record": False}
    original = run_submission(SUBMISSIONS / "good.py", mini_task, **kwargs)
    again = run_submission(packed, mini_task, **kwargs)
    assert original.status == again.status == "OK", again.message + again.log_tail
    assert again.checkpoint.sha256 == original.checkpoint.sha256
    assert not (again.run_dir / "work" / "submission" / "_fixture_io.py").exists()  # nothing but the one file


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_packed_file_respects_the_umask(tmp_path, umask):
    """The packed file gets 0666 & ~umask (0644 / 0600), like any file the user's shell creates; an existing
    file is replaced by one with the umask's mode, not kept at its old one."""
    write(tmp_path, "entry.py", "import helper\n\ndef unlearn(m, o, f, r):\n    pass\n")
    write(tmp_path, "helper.py", "X = 1\n")
    out = tmp_path / "dist" / "entry.py"
    out.parent.mkdir()
    out.write_text("old\n")
    out.chmod(0o640)
    previous = os.umask(umask)
    try:
        pack(tmp_path / "entry.py", out)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert "X = 1" in out.read_text()  # the new, packed contents (helper embedded)
