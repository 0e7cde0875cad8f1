"""Wall time of a cold build of the tiny world, and whether full builds are canonical under each ATen ISA.

Default mode: builds into fresh temporary cache roots, so nothing is reused, and prints the wall seconds
of each stage (from the build's build.json), of the whole target build and of a cold build with the gold
model (trained in parallel, as `task build tiny --gold` and the demo do), with the load average before
and after (other processes on the machine slow the build down: read the figure with it). A second
`build_tiny` call on the same inputs is timed too (the cache hit).

``--capabilities default,avx2,native``: one full cold build (target and gold) per value, each in a
fresh process whose environment sets ``ATEN_CPU_CAPABILITY`` to it (``native``: unset), and the file
hashes of each build against the pinned canonical ones (`tasks/tiny/canonical.json`). This is the
full-size check the test suite makes only on reduced-epoch builds. ``--pin`` writes the first build's
hashes into canonical.json for its cache key (do it only when the recipe changed on purpose, and only
after the capabilities agreed). Run:

    python benchmarks/tiny_build.py [--size tiny|small] [--seed 0] [--no-gold] [--json]
    python benchmarks/tiny_build.py --capabilities default,avx2,native [--seed 0] [--pin] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tasks.tiny import build_tiny
from tasks.tiny.build import CANONICAL_FILE, cache_key, pinned_hashes

#: the child of --capabilities: one cold build, its file hashes and wall time as JSON on stdout
_CHILD = """
import json, sys, time
from pathlib import Path
from tasks.tiny import build_tiny
from tasks.tiny.build import file_hashes
start = time.perf_counter()
build = build_tiny(seed=int(sys.argv[1]), size=sys.argv[2], gold=True, cache_root=Path(sys.argv[3]), progress=False)
print(json.dumps({"wall_s": round(time.perf_counter() - start, 1), "files": file_hashes(build.root)}))
"""


def timings(args: argparse.Namespace) -> dict[str, object]:
    """The default mode: cold build stages, the cache hit, a cold build with the gold model."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tiny-build-bench-") as cache:
        start = time.perf_counter()
        build = build_tiny(seed=args.seed, size=args.size, gold=False, cache_root=Path(cache), progress=False)
        target_s = time.perf_counter() - start
        start = time.perf_counter()
        build_tiny(seed=args.seed, size=args.size, gold=False, cache_root=Path(cache), progress=False)
        hit_s = time.perf_counter() - start
        stages = json.loads((build.root / "build.json").read_text())["timings"]
    both_s = None
    if not args.no_gold:  # a second cold build, target and gold together (the gold trains in parallel)
        with tempfile.TemporaryDirectory(prefix="tiny-build-bench-") as cache:
            start = time.perf_counter()
            build_tiny(seed=args.seed, size=args.size, gold=True, cache_root=Path(cache), progress=False)
            both_s = time.perf_counter() - start
    return {
        "size": args.size,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "stages_s": stages,
        "target_s": round(target_s, 1),
        "with_gold_s": None if both_s is None else round(both_s, 1),
        "cache_hit_s": round(hit_s, 3),
        "load_before": round(load_before[0], 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def capabilities(args: argparse.Namespace) -> dict[str, object]:
    """One full cold build per ATen capability (a fresh process each), compared with the pinned hashes."""
    pinned = pinned_hashes(args.seed, args.size)
    builds: dict[str, dict[str, object]] = {}
    for capability in args.capabilities.split(","):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if capability != "native":
            env["ATEN_CPU_CAPABILITY"] = capability
        print(f"building under ATEN_CPU_CAPABILITY={capability} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="tiny-build-bench-") as cache:
            command = [sys.executable, "-c", _CHILD, str(args.seed), args.size, cache]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the build under {capability} failed: {done.stderr.strip().splitlines()[-1:]}")
        builds[capability] = json.loads(done.stdout.strip().splitlines()[-1])
    files = [build["files"] for build in builds.values()]
    result = {
        "key": cache_key(args.seed, args.size),
        "builds": {
            cap: {"wall_s": b["wall_s"], "target": b["files"]["model/model.safetensors"][:16]}
            | {"gold": b["files"]["gold/model.safetensors"][:16], "canonical": b["files"] == pinned}
            for cap, b in builds.items()
        },
        "identical": all(f == files[0] for f in files),
        "pinned": pinned is not None,
    }
    if args.pin:
        if not result["identical"]:
            raise SystemExit("not pinned: the builds differ between capabilities")
        pins = json.loads(CANONICAL_FILE.read_text(encoding="utf-8")) if CANONICAL_FILE.is_file() else {}
        pins[result["key"]] = {"seed": args.seed, "size": args.size, "files": files[0]}
        CANONICAL_FILE.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        result["pinned"] = True
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-gold", action="store_true", help="skip the gold model")
    parser.add_argument("--capabilities", help="e.g. default,avx2,native: full builds per ATen ISA")
    parser.add_argument("--pin", action="store_true", help="with --capabilities: write canonical.json")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = capabilities(args) if args.capabilities else timings(args)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.capabilities:
        print(f"tiny world {result['key']}: full cold builds per ATEN_CPU_CAPABILITY")
        for cap, build in result["builds"].items():
            print(
                f"  {cap:<8} {build['wall_s']:6.1f} s  target {build['target']}  gold {build['gold']}"
                f"  canonical {build['canonical']}"
            )
        print(f"identical across capabilities: {result['identical']}; pinned: {result['pinned']}")
    else:
        print(f"tiny world cold build (size {args.size}, seed {args.seed}) on {result['cpus']} CPUs")
        for name, seconds in result["stages_s"].items():
            print(f"  {name:<14} {seconds:8.1f} s")
        print(f"  {'target total':<14} {result['target_s']:8.1f} s   (cold: data + tokenizer + target model)")
        if result["with_gold_s"] is not None:
            print(
                f"  {'with gold':<14} {result['with_gold_s']:8.1f} s   (cold, the gold model training in parallel)"
            )
        print(f"  {'cache hit':<14} {result['cache_hit_s']:8.3f} s")
        print(f"load average (1 min) before {result['load_before']:.2f}, after {result['load_after']:.2f}")


if __name__ == "__main__":
    main()
