"""Static contract checks: entry point, parameter order (by names and by use), defaults, imports, siblings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.contract import check_submission


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def messages(report) -> list[str]:
    return [str(p) for p in report.problems]


@pytest.mark.parametrize(
    "params",
    [
        "input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model, path_to_forget_set, path_to_retain_set",
        "model_dir, output_dir, forget_dir, retain_dir",
        "model_path, save_path, forget_path, retain_path",
        "a, b, c, d",
        "*args",
    ],
)
def test_official_signatures_pass(tmp_path, params):
    report = check_submission(write(tmp_path, "s.py", f"def unlearn({params}):\n    pass\n"))
    assert report.ok, messages(report)
    assert report.problems == []


def test_wrong_order_is_found_by_name(tmp_path):
    path = write(
        tmp_path, "s.py", "\n\ndef unlearn(input_path, retain_set, forget_set, output_path):\n    pass\n"
    )
    report = check_submission(path)
    found = messages(report)
    assert len(found) == 2
    assert found[0].startswith(
        f"{path}:3: error: parameter 2 'retain_set' looks like the retain-set directory"
    )
    assert "parameter 4 'output_path' looks like the output directory" in found[1]


def test_wrong_order_is_found_by_use(tmp_path):
    source = """
    import os
    from transformers import AutoModelForCausalLM

    def unlearn(a, b, c, d):
        model = AutoModelForCausalLM.from_pretrained(b)
        model.save_pretrained(a)
        rows = open(os.path.join(d, "forget.jsonl")).read()
        more = open(f"{c}/retain.parquet", "rb").read()
    """
    report = check_submission(write(tmp_path, "s.py", source))
    found = " | ".join(messages(report))
    assert "parameter 1 'a' is used as the output directory" in found
    assert "parameter 2 'b' is used as the input model directory" in found
    assert "parameter 3 'c' is used as the retain-set directory" in found
    assert "parameter 4 'd' is used as the forget-set directory" in found


def test_defaults_and_counts(tmp_path):
    report = check_submission(
        write(tmp_path, "s.py", "def unlearn(m, o, f, r, lr, *, seed, epochs=2):\n    pass\n")
    )
    found = messages(report)
    assert [m.split("error: ")[1].split(";")[0] for m in found] == [
        "parameter 'lr' has no default",
        "parameter 'seed' has no default",
    ]
    report = check_submission(write(tmp_path, "t.py", "def unlearn(model, out, forget):\n    pass\n"))
    assert "takes 3 positional parameters" in messages(report)[0]


def test_entry_point_must_exist_once(tmp_path):
    assert (
        "no top-level function 'unlearn'" in messages(check_submission(write(tmp_path, "a.py", "x = 1\n")))[0]
    )
    twice = "def unlearn(m, o, f, r):\n    pass\n\n\ndef unlearn(m, o, f, r):\n    pass\n"
    assert "defined 2 times (lines 1, 5)" in messages(check_submission(write(tmp_path, "b.py", twice)))[0]
    nested = "class C:\n    def unlearn(self, m, o, f, r):\n        pass\n"
    assert not check_submission(write(tmp_path, "c.py", nested)).ok


def test_extra_parameters_and_accepts(tmp_path):
    report = check_submission(
        write(tmp_path, "s.py", "def unlearn(m, o, f, r, lr=1e-5, *, mode='ga'):\n    pass\n")
    )
    assert [(p.name, p.default) for p in report.extra_parameters] == [("lr", 1e-5), ("mode", "ga")]
    assert report.accepts("lr") and report.accepts("mode") and not report.accepts("beta")
    report = check_submission(write(tmp_path, "t.py", "def unlearn(m, o, f, r, **kw):\n    pass\n"))
    assert report.accepts("anything")


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "s.py", "def unlearn(m, o, f, r):\n    return (\n\nx = [\n")
    found = messages(check_submission(path))
    assert len(found) == 1 and found[0].startswith(f"{path}:") and "syntax error" in found[0]
    assert check_submission(path).errors[0].kind == "import"


def test_imports_resolved_and_packages_to_request(tmp_path):
    source = """
    import json, os.path
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM
    import peft
    from sklearn.metrics import roc_auc_score
    import not_a_real_package_xyz
    try:
        import flash_attn
    except ImportError:
        flash_attn = None

    def unlearn(model_dir, output_dir, forget_dir, retain_dir):
        import bitsandbytes
    """
    path = write(tmp_path, "s.py", source)
    report = check_submission(path)
    assert [str(p) for p in report.errors] == [
        f"{path}:8: error: import 'not_a_real_package_xyz' cannot be resolved (not installed here)"
    ]
    assert report.requested_packages == {
        "peft": "peft",
        "sklearn": "scikit-learn",
        "bitsandbytes": "bitsandbytes",
    }
    assert [p.line for p in report.warnings] == [6, 7, 15]
    assert "must be requested on the submission form" in str(report.warnings[0])


def test_sibling_modules_are_checked_recursively(tmp_path):
    write(tmp_path, "helper.py", "import deeper\n")
    write(tmp_path, "deeper.py", "\n\nimport peft\nimport missing_pkg_abc\n")
    write(tmp_path, "pkg/__init__.py", "from .sub import f\n")
    write(tmp_path, "pkg/sub.py", "def f():\n    return 1\n")
    path = write(
        tmp_path, "s.py", "import helper\nfrom pkg.sub import f\n\ndef unlearn(m, o, f_, r):\n    pass\n"
    )
    report = check_submission(path)
    assert set(report.siblings) == {"helper", "deeper", "pkg", "pkg.sub"}
    assert [str(p) for p in report.errors] == [
        f"{tmp_path / 'deeper.py'}:4: error: import 'missing_pkg_abc' cannot be resolved (not installed here)"
    ]
    assert report.requested_packages == {"peft": "peft"}
    assert report.warnings[0].path == str(tmp_path / "deeper.py") and report.warnings[0].line == 3


def test_relative_import_in_the_submission_is_an_error(tmp_path):
    report = check_submission(
        write(tmp_path, "s.py", "from . import helper\n\ndef unlearn(m, o, f, r):\n    pass\n")
    )
    assert "relative import" in messages(report)[0]


def test_not_a_python_file(tmp_path):
    assert "no such file" in messages(check_submission(tmp_path / "missing.py"))[0]
    (tmp_path / "entry.txt").write_text("def unlearn(m, o, f, r): pass\n")
    assert "one Python file" in messages(check_submission(tmp_path / "entry.txt"))[0]
