"""Packing a submission into the single file the organisers accept.

Sibling modules that the submission imports from its own folder are embedded as source strings and
served by a small import hook placed before the submission's own code, so each keeps its own module
namespace (``import helper`` still gives a module named ``helper``). The result is written
atomically, passes `contract.check_submission`, and behaves like the original.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from harness.checkpoint import sha256_file
from harness.contract import PACKED_LOADER, ContractReport, check_submission
from harness.errors import HarnessError
from harness.files import write_text_atomic

_LOADER = """
# --- embedded by unlearn-harness pack: the sibling modules this submission imports --------------
def _unlearn_harness_embed(sources):
    import importlib.abc
    import importlib.util
    import sys

    class _EmbeddedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            if fullname not in sources:
                return None
            filename, is_package, _ = sources[fullname]
            return importlib.util.spec_from_loader(fullname, self, origin=filename, is_package=is_package)

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            filename, _, source = sources[module.__name__]
            module.__file__ = filename
            exec(compile(source, filename, "exec"), module.__dict__)

    sys.meta_path.insert(0, _EmbeddedModules())


_unlearn_harness_embed({sources})
del _unlearn_harness_embed
# --- end of embedded modules ---------------------------------------------------------------------
"""


@dataclass
class PackReport:
    """What `pack` wrote and what the organisers must be asked for."""

    output: Path
    embedded: dict[str, str] = field(default_factory=dict)  # module name -> original file
    requested_packages: list[str] = field(default_factory=list)
    sha256: str = ""
    check: ContractReport | None = None

    def to_json(self) -> dict:
        return {
            "output": str(self.output),
            "sha256": self.sha256,
            "embedded": self.embedded,
            "requested_packages": self.requested_packages,
            "problems": [str(p) for p in self.check.problems] if self.check else [],
        }


def _split_header(source: str) -> int:
    """The line after the module docstring and `from __future__` imports (they must stay first)."""
    tree = ast.parse(source)
    end = 0
    for index, node in enumerate(tree.body):
        is_doc = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if not (is_doc or is_future):
            break
        end = node.end_lineno or node.lineno
    return end


def packed_source(submission: Path, report: ContractReport) -> str:
    """The single-file source: the submission with its sibling modules embedded."""
    source = submission.read_text(encoding="utf-8")
    if not report.siblings:
        return source
    folder = submission.resolve().parent
    sources = {}
    for name, path in sorted(report.siblings.items()):
        rel = Path(path).resolve().relative_to(folder)
        sources[name] = (
            f"<packed>/{rel.as_posix()}",
            Path(path).name == "__init__.py",
            Path(path).read_text("utf-8"),
        )
    lines = source.splitlines(keepends=True)
    cut = _split_header(source)
    head, body = "".join(lines[:cut]), "".join(lines[cut:])
    if head and not head.endswith("\n"):
        head += "\n"
    loader = _LOADER.replace("_unlearn_harness_embed", PACKED_LOADER).replace("{sources}", repr(sources))
    return head + loader + "\n" + body


def pack(submission: Path, output: Path) -> PackReport:
    """Write the packed single file of `submission` to `output` (atomically) and check it."""
    submission, output = Path(submission), Path(output)
    report = check_submission(submission)
    if report.errors:
        raise HarnessError(f"cannot pack: {report.errors[0]}")
    if output.resolve() == submission.resolve():
        raise HarnessError(f"{output}: refusing to overwrite the submission itself; choose another -o")
    text = packed_source(submission, report)
    write_text_atomic(output, text)
    check = check_submission(output)
    return PackReport(
        output=output,
        embedded={name: str(path) for name, path in report.siblings.items()},
        requested_packages=sorted(set(report.requested_packages.values())),
        sha256=sha256_file(output),
        check=check,
    )
