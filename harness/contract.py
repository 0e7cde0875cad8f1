"""Static checks of a submission file: the official entry point, its signature and its imports.

Never executes the submission: everything is read from the AST. `check_submission` returns a
`ContractReport` whose problems are one line each (``file:line: problem``). Sibling modules the
submission imports from its own folder are found and checked recursively (the packer embeds them).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

#: what the organisers pre-installed next to the Python standard library (README of the task)
PREINSTALLED = frozenset(
    {"torch", "transformers", "datasets", "accelerate", "deepspeed", "pandas", "rouge_score", "tqdm", "numpy"}
)
#: installed as dependencies of the pre-installed packages, so importable there too
TRANSITIVE = frozenset(
    {
        "huggingface_hub",
        "safetensors",
        "tokenizers",
        "pyarrow",
        "filelock",
        "packaging",
        "yaml",
        "regex",
        "requests",
        "fsspec",
        "psutil",
        "nltk",
        "absl",
        "six",
        "jinja2",
        "sympy",
        "networkx",
        "dill",
        "multiprocess",
        "xxhash",
        "aiohttp",
        "dateutil",
        "pytz",
        "tzdata",
        "typing_extensions",
        "triton",
    }
)
#: the four official parameters, in order
ROLES = ("model", "output", "forget", "retain")
ROLE_TEXT = {
    "model": "the input model directory",
    "output": "the output directory",
    "forget": "the forget-set directory",
    "retain": "the retain-set directory",
}
OFFICIAL_SIGNATURE = (
    "unlearn(input_path_to_unlearning_candidate_model, output_path_to_write_unlearned_model, "
    "path_to_forget_set, path_to_retain_set)"
)
#: the function through which a packed file registers its embedded modules (see harness.pack)
PACKED_LOADER = "_unlearn_harness_embed"
_OUTPUT_WORDS = {"output", "out", "save", "write", "dest", "destination", "target", "unlearned", "result"}
_MODEL_WORDS = {
    "model",
    "input",
    "candidate",
    "base",
    "ckpt",
    "checkpoint",
    "in",
    "src",
    "source",
    "pretrained",
}


@dataclass(frozen=True)
class Problem:
    """One finding: ``file:line: message``; errors stop a run, warnings do not."""

    path: str
    line: int | None
    message: str
    level: str = "error"  # "error" | "warning"
    kind: str = "signature"  # "signature" | "import"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.level}: {self.message}"


@dataclass(frozen=True)
class Parameter:
    name: str
    has_default: bool
    default: Any = None
    kind: str = "positional"  # "positional" | "keyword" | "varargs" | "varkw"


@dataclass
class ContractReport:
    """What `check_submission` found."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    parameters: list[Parameter] = field(default_factory=list)
    #: import name -> distribution to request on the submission form (not pre-installed there)
    requested_packages: dict[str, str] = field(default_factory=dict)
    #: sibling modules imported from the submission's folder: module name -> file
    siblings: dict[str, Path] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def extra_parameters(self) -> list[Parameter]:
        return [p for p in self.parameters[4:] if p.kind in ("positional", "keyword")]

    def accepts(self, name: str) -> bool:
        """Whether `unlearn` takes a keyword argument `name` (beyond the four official ones)."""
        if any(p.kind == "varkw" for p in self.parameters):
            return True
        return any(p.name == name for p in self.extra_parameters)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "problems": [str(p) for p in self.problems],
            "parameters": [p.name for p in self.parameters],
            "requested_packages": sorted(set(self.requested_packages.values())),
            "siblings": {name: str(path) for name, path in self.siblings.items()},
        }


def _role_from_name(name: str) -> str | None:
    words = set(name.lower().replace("-", "_").split("_"))
    if "forget" in words:
        return "forget"
    if "retain" in words:
        return "retain"
    if words & _OUTPUT_WORDS:
        return "output"
    if words & _MODEL_WORDS:
        return "model"
    return None


def _roles_from_usage(fn: ast.FunctionDef, names: list[str]) -> dict[str, str]:
    """Roles suggested by how the body uses each parameter (from_pretrained, save_pretrained, 'forget...')."""
    found: dict[str, str] = {}
    params = set(names)

    def param_in(node: ast.AST) -> str | None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in params:
                return sub.id
        return None

    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            func = node.func
            attr = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if attr in ("from_pretrained", "save_pretrained", "save_model") and node.args:
                name = param_in(node.args[0])
                if name:
                    found.setdefault(name, "model" if attr == "from_pretrained" else "output")
        if isinstance(node, (ast.Call, ast.JoinedStr, ast.BinOp)):
            literals = [
                c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
            text = " ".join(literals).lower()
            for word in ("forget", "retain"):
                if word in text and ("jsonl" in text or "parquet" in text or text.strip(" ./") == word):
                    name = param_in(node)
                    if name:
                        found.setdefault(name, word)
    return found


def _parameters(fn: ast.FunctionDef) -> list[Parameter]:
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = [
        Parameter(a.arg, d is not None, _literal(d), "positional")
        for a, d in zip(positional, defaults, strict=True)
    ]
    if args.vararg:
        out.append(Parameter(args.vararg.arg, True, None, "varargs"))
    out += [
        Parameter(a.arg, d is not None, _literal(d), "keyword")
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        out.append(Parameter(args.kwarg.arg, True, None, "varkw"))
    return out


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
        json.dumps(value)
        return value
    except (ValueError, TypeError, SyntaxError):
        return ast.unparse(node)


def _check_signature(path: Path, tree: ast.Module, report: ContractReport) -> None:
    name = str(path)
    defs = [
        node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "unlearn"
    ]
    if not defs:
        report.problems.append(
            Problem(name, None, f"no top-level function 'unlearn'; the organisers call {OFFICIAL_SIGNATURE}")
        )
        return
    if len(defs) > 1:
        lines = ", ".join(str(d.lineno) for d in defs)
        report.problems.append(
            Problem(
                name, defs[-1].lineno, f"'unlearn' is defined {len(defs)} times (lines {lines}); keep one"
            )
        )
    fn = defs[-1]
    if isinstance(fn, ast.AsyncFunctionDef):
        report.problems.append(Problem(name, fn.lineno, "'unlearn' must be a plain function, not async"))
        return
    params = _parameters(fn)
    report.parameters = params
    positional = [p for p in params if p.kind == "positional"]
    has_varargs = any(p.kind == "varargs" for p in params)
    if len(positional) < 4 and not has_varargs:
        report.problems.append(
            Problem(
                name,
                fn.lineno,
                f"'unlearn' takes {len(positional)} positional parameters; the organisers pass 4: "
                f"{OFFICIAL_SIGNATURE}",
            )
        )
        return
    first = [p.name for p in positional[:4]]
    usage = _roles_from_usage(fn, first)
    for index, (param, expected) in enumerate(zip(first, ROLES)):
        role = usage.get(param) or _role_from_name(param)
        if role is not None and role != expected:
            how = "is used as" if param in usage else "looks like"
            report.problems.append(
                Problem(
                    name,
                    fn.lineno,
                    f"parameter {index + 1} '{param}' {how} {ROLE_TEXT[role]}, but the organisers pass "
                    f"{ROLE_TEXT[expected]} there; the official order is {OFFICIAL_SIGNATURE}",
                )
            )
    for param in params:
        if param in positional[:4] or param.kind in ("varargs", "varkw") or param.has_default:
            continue
        report.problems.append(
            Problem(
                name,
                fn.lineno,
                f"parameter '{param.name}' has no default; the organisers pass only the four paths, "
                f"so every further parameter needs a default (e.g. {param.name}=...)",
            )
        )


def _imports(tree: ast.Module) -> list[tuple[str, int, int, bool]]:
    """(module, level, line, guarded) for every import; guarded = inside try/except ImportError."""
    guarded_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            catches = {ast.unparse(h.type) if h.type else "" for h in node.handlers}
            if catches & {
                "ImportError",
                "ModuleNotFoundError",
                "",
                "Exception",
                "(ImportError, ModuleNotFoundError)",
            }:
                for sub in node.body:
                    guarded_lines.update(n.lineno for n in ast.walk(sub) if hasattr(n, "lineno"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, 0, node.lineno, node.lineno in guarded_lines))
        elif isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                continue
            found.append((node.module or "", node.level, node.lineno, node.lineno in guarded_lines))
            if node.level and not node.module:
                for alias in node.names:
                    found.append((alias.name, node.level, node.lineno, node.lineno in guarded_lines))
    return found


def _sibling(folder: Path, dotted: str) -> Path | None:
    base = folder.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


def _distribution(top: str) -> str:
    dists = _distributions().get(top)
    return dists[0] if dists else top


def _embedded(tree: ast.Module) -> dict[str, tuple[str, bool, str]]:
    """Modules embedded by `unlearn-harness pack`: name -> (file name, is package, source)."""
    for node in tree.body:
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == PACKED_LOADER
            and node.value.args
        ):
            try:
                return dict(ast.literal_eval(node.value.args[0]))
            except (ValueError, TypeError, SyntaxError):
                return {}
    return {}


def _check_file(
    path: Path,
    folder: Path,
    report: ContractReport,
    seen: set[Path],
    main: bool,
    source: str | None = None,
    embedded: frozenset[str] = frozenset(),
) -> None:
    seen.add(path.resolve())
    try:
        source = path.read_text(encoding="utf-8") if source is None else source
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        report.problems.append(Problem(str(path), exc.lineno, f"syntax error: {exc.msg}", kind="import"))
        return
    except (OSError, UnicodeDecodeError) as exc:
        report.problems.append(Problem(str(path), None, f"cannot read: {exc}", kind="import"))
        return
    if main:
        _check_signature(path, tree, report)
        packed = _embedded(tree)
        embedded = frozenset(name.split(".")[0] for name in packed)
        for filename, _, module_source in packed.values():
            _check_file(Path(filename), folder, report, seen, False, module_source, embedded)
    for module, level, line, guarded in _imports(tree):
        if level:
            if main:
                report.problems.append(
                    Problem(
                        str(path),
                        line,
                        "relative import in the submission file; use 'import helper'",
                        kind="import",
                    )
                )
            continue  # inside a sibling package: the whole package is embedded and checked
        top = module.split(".")[0]
        if top in embedded:
            continue
        sibling = _sibling(folder, top)
        if sibling is not None:
            if sibling.resolve() not in seen:
                if sibling.name == "__init__.py":
                    _add_package(sibling.parent, folder, report, seen)
                else:
                    report.siblings[top] = sibling
                    _check_file(sibling, folder, report, seen, main=False)
            continue
        if top in sys.stdlib_module_names or top in PREINSTALLED or top in TRANSITIVE:
            continue
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            if not guarded:
                report.problems.append(
                    Problem(
                        str(path),
                        line,
                        f"import '{top}' cannot be resolved (not installed here)",
                        kind="import",
                    )
                )
            continue
        dist = _distribution(top)
        if top not in report.requested_packages:
            report.requested_packages[top] = dist
            report.problems.append(
                Problem(
                    str(path),
                    line,
                    f"'{top}' is not pre-installed by the organisers: it must be requested on the submission "
                    f"form (package '{dist}')",
                    level="warning",
                    kind="import",
                )
            )


def _add_package(package: Path, folder: Path, report: ContractReport, seen: set[Path]) -> None:
    for file in sorted(package.rglob("*.py")):
        if file.resolve() in seen or "__pycache__" in file.parts:
            continue
        rel = file.relative_to(folder).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        report.siblings[".".join(parts)] = file
        _check_file(file, folder, report, seen, main=False)


def check_submission(path: Path) -> ContractReport:
    """Statically check a submission file (never executes it)."""
    path = Path(path)
    report = ContractReport(path=path)
    if not path.is_file():
        report.problems.append(Problem(str(path), None, "no such file", kind="import"))
        return report
    if path.suffix != ".py":
        report.problems.append(
            Problem(str(path), None, "a submission is one Python file (.py)", kind="import")
        )
        return report
    _check_file(path, path.parent, report, set(), main=True)
    return report
