"""The task registry: the embedded ``tiny`` task and the real tasks described by ``tasks/*.toml``.

A real task's TOML file has a ``[paths]`` table (TaskSpec path fields) and a ``[settings]`` table (the
other TaskSpec fields). Every value can be overridden, highest precedence first, by

1. the ``overrides`` dict of `get_task` (what the CLI flags fill in), keys = TaskSpec field names;
2. an environment variable ``UNLEARN_HARNESS_<TASK>_<FIELD>``, e.g. ``UNLEARN_HARNESS_SEMEVAL25_7B_MODEL_DIR``
   (task name upper-cased, every non-alphanumeric character replaced by ``_``);
3. the TOML file itself.

Relative paths in a TOML file resolve against that file's folder; relative paths from overrides and
environment variables resolve against the current directory. ``{shared_data}`` in a TOML path stands
for ``$UNLEARN_HARNESS_SHARED_DATA``, else ``../shared/data`` next to the repository. An empty path means
"not set". The ``tiny`` task takes the overrides ``seed``, ``size`` and ``gold`` (its build settings)
besides the TaskSpec settings.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

from tasks.errors import DataError
from tasks.spec import FLOAT_FIELDS, INT_FIELDS, PATH_FIELDS, SETTING_FIELDS, TaskSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TASKS_DIR = Path(__file__).resolve().parent
TINY = "tiny"

DTYPES = ("bfloat16", "float16", "float32")
TINY_BUILD_KEYS = ("seed", "size", "gold")


def _toml_files() -> dict[str, Path]:
    return {path.stem: path for path in sorted(TASKS_DIR.glob("*.toml"))}


def list_tasks() -> list[str]:
    """Names of every known task: ``tiny`` first, then the TOML tasks in name order."""
    return [TINY, *_toml_files()]


def env_name(task: str, field: str) -> str:
    """The environment variable that overrides ``field`` of ``task``."""
    return "UNLEARN_HARNESS_" + re.sub(r"[^A-Za-z0-9]", "_", f"{task}_{field}").upper()


def shared_data_root() -> Path:
    """What ``{shared_data}`` stands for in TOML paths."""
    env = os.environ.get("UNLEARN_HARNESS_SHARED_DATA")
    return Path(env).expanduser() if env else TASKS_DIR.parent.parent / "shared" / "data"


def _unknown(where: object, keys: list[str], known: tuple[str, ...]) -> DataError:
    return DataError(where, f"unknown setting(s) {', '.join(keys)} (known: {', '.join(known)})")


def _convert(field: str, value: object, where: object) -> object:
    """A setting's value (from TOML, an env var or an override string) as the TaskSpec field's type."""
    text = str(value).strip() if not isinstance(value, (list, tuple)) else None
    try:
        if field in INT_FIELDS:
            number = int(value) if isinstance(value, int) and not isinstance(value, bool) else int(text or "")
            if number < (0 if field == "mmlu_shots" else 1):
                raise ValueError
            return number
        if field in FLOAT_FIELDS:
            number = float(
                value if isinstance(value, (int, float)) and not isinstance(value, bool) else text or ""
            )
            if not number > 0:
                raise ValueError
            return number
    except ValueError:
        kind = "a non-negative integer" if field == "mmlu_shots" else "a positive integer"
        kind = "a positive number" if field in FLOAT_FIELDS else kind
        raise DataError(where, f"{field} must be {kind}, got {value!r}") from None
    if field == "mmlu_threshold":
        if text is not None and text.lower() in ("", "none"):
            return None
        try:
            threshold = float(value if isinstance(value, (int, float)) else text or "")
        except ValueError:
            threshold = -1.0
        if not 0.0 <= threshold <= 1.0:
            raise DataError(where, f"mmlu_threshold must be a number in [0, 1] or 'none', got {value!r}")
        return threshold
    if field == "mmlu_subjects":
        items = list(value) if isinstance(value, (list, tuple)) else (text or "").split(",")
        subjects = tuple(str(item).strip() for item in items if str(item).strip())
        return subjects or None
    if field in ("cuda_dtype", "cpu_dtype"):
        if text not in DTYPES:
            raise DataError(where, f"{field} must be one of {', '.join(DTYPES)}, got {value!r}")
        return text
    raise AssertionError(field)


def _path(value: object, base: Path, where: object, *, placeholders: bool) -> Path | None:
    if not isinstance(value, str):
        raise DataError(where, f"a path must be a string, got {value!r}")
    text = value.strip()
    if placeholders:
        text = text.replace("{shared_data}", str(shared_data_root()))
    if not text:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"name", "description", "paths", "settings"})
    if extra:
        raise _unknown(path, extra, ("name", "description", "paths", "settings"))
    for table, known in (("paths", PATH_FIELDS), ("settings", SETTING_FIELDS)):
        if not isinstance(data.get(table, {}), dict):
            raise DataError(path, f"[{table}] must be a table")
        bad = sorted(set(data.get(table, {})) - set(known))
        if bad:
            raise _unknown(f"{path} [{table}]", bad, known)
    if data.get("name", path.stem) != path.stem:
        raise DataError(path, f"name {data['name']!r} differs from the file name {path.stem!r}")
    return data


def _layered(task: str, fields: tuple[str, ...], overrides: dict[str, str]) -> dict[str, tuple[object, str]]:
    """Values from overrides, else the environment: field -> (raw value, where it came from)."""
    out: dict[str, tuple[object, str]] = {}
    for field in fields:
        if field in overrides:
            out[field] = (overrides[field], f"override {field}")
        elif env_name(task, field) in os.environ:
            out[field] = (os.environ[env_name(task, field)], f"${env_name(task, field)}")
    return out


def _toml_task(name: str, path: Path, overrides: dict[str, str]) -> TaskSpec:
    data = _read_toml(path)
    values: dict[str, object] = {}
    for field, raw in data.get("paths", {}).items():
        values[field] = _path(raw, path.parent, f"{path} [paths] {field}", placeholders=True)
    for field, raw in data.get("settings", {}).items():
        values[field] = _convert(field, raw, f"{path} [settings] {field}")
    for field, (raw, where) in _layered(name, PATH_FIELDS + SETTING_FIELDS, overrides).items():
        if field in PATH_FIELDS:
            values[field] = _path(raw, Path.cwd(), where, placeholders=False)
        else:
            values[field] = _convert(field, raw, where)
    for field in PATH_FIELDS:
        values.setdefault(field, None)
    return TaskSpec(
        name=name,
        description=str(data.get("description", "")),
        source=str(path),
        extra={"toml": str(path)},
        **values,
    )


def _tiny_task(overrides: dict[str, str], *, build: bool, progress: bool) -> TaskSpec:
    from tasks.tiny import build_tiny, tiny_paths, tiny_spec

    layered = _layered(TINY, TINY_BUILD_KEYS + SETTING_FIELDS, overrides)
    seed_raw, where = layered.get("seed", (0, ""))
    try:
        seed = int(seed_raw)
        if seed < 0:
            raise ValueError
    except ValueError:
        raise DataError(
            where, f"the tiny-world seed must be a non-negative integer, got {seed_raw!r}"
        ) from None
    size, where = layered.get("size", ("tiny", ""))
    if size not in ("tiny", "small"):
        raise DataError(where, f"the tiny-world size must be 'tiny' or 'small', got {size!r}")
    gold_raw = str(layered.get("gold", ("false", ""))[0]).strip().lower()
    gold = gold_raw in ("1", "true", "yes", "on")
    if build:
        spec = tiny_spec(build_tiny(seed=seed, size=str(size), gold=gold, progress=progress))
    else:
        spec = tiny_spec(tiny_paths(seed=seed, size=str(size)))
    settings = {
        field: _convert(field, raw, where)
        for field, (raw, where) in layered.items()
        if field in SETTING_FIELDS
    }
    return dataclasses.replace(spec, **settings)


def _resolve(name: str, overrides: dict[str, str] | None, *, build: bool, progress: bool) -> TaskSpec:
    overrides = dict(overrides or {})
    tomls = _toml_files()
    if name != TINY and name not in tomls:
        raise DataError(TASKS_DIR, f"unknown task {name!r} (known: {', '.join(list_tasks())})")
    known = (TINY_BUILD_KEYS + SETTING_FIELDS) if name == TINY else (PATH_FIELDS + SETTING_FIELDS)
    bad = sorted(set(overrides) - set(known))
    if bad:
        raise _unknown(f"task {name}", bad, known)
    if name == TINY:
        return _tiny_task(overrides, build=build, progress=progress)
    return _toml_task(name, tomls[name], overrides)


def get_task(name: str, overrides: dict[str, str] | None = None, *, progress: bool = True) -> TaskSpec:
    """The `TaskSpec` of task ``name``; for ``tiny`` this builds the tiny world into the cache if needed."""
    return _resolve(name, overrides, build=True, progress=progress)


def describe_task(name: str, overrides: dict[str, str] | None = None) -> TaskSpec:
    """Like `get_task` but never builds: ``tiny`` points at its cache location, built or not."""
    return _resolve(name, overrides, build=False, progress=False)


def validate_task(spec: TaskSpec) -> dict[str, int]:
    """Read every data file of ``spec`` that is present through the `tasks.data` readers (DataError on
    the first problem); returns counts: forget/retain rows handed over and scored, MIA documents,
    MMLU subjects and test questions."""
    from tasks.data import read_mia, read_mmlu, read_rows, read_split

    counts: dict[str, int] = {}
    for label, directory, split in (
        ("forget", spec.forget_dir, "forget"),
        ("retain", spec.retain_dir, "retain"),
    ):
        if directory is not None and directory.exists():
            counts[f"{label}_rows"] = len(read_split(directory, split))
    for label, path in (("eval_forget", spec.eval_forget), ("eval_retain", spec.eval_retain)):
        if path is not None and path.exists():
            counts[f"{label}_rows"] = len(read_rows(path))
    for label, path in (("mia_member", spec.mia_member), ("mia_nonmember", spec.mia_nonmember)):
        if path is not None and path.exists():
            counts[f"{label}_docs"] = len(read_mia(path))
    if spec.mmlu_dir is not None and spec.mmlu_dir.exists():
        subjects = read_mmlu(spec.mmlu_dir, spec.mmlu_subjects)
        counts["mmlu_subjects"] = len(subjects)
        counts["mmlu_test_questions"] = sum(len(subject.test) for subject in subjects)
    return counts
