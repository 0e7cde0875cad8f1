"""Wall time of a cold build of the tiny world (data, tokenizer, target model; then with the gold model).

Builds into fresh temporary cache roots, so nothing is reused, and prints the wall seconds of each
stage (from the build's build.json), of the whole target build and of a cold build with the gold model
(trained in parallel, as `task build tiny --gold` and the demo do), with the load
average before and after (other processes on the machine slow the build down: read the figure with it).
A second `build_tiny` call on the same inputs is timed too (the cache hit). Run:

    python benchmarks/tiny_build.py [--size tiny|small] [--seed 0] [--no-gold]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from tasks.tiny import build_tiny


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-gold", action="store_true", help="skip the gold model")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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
    load_after = os.getloadavg()
    print(f"tiny world cold build (size {args.size}, seed {args.seed}) on {os.cpu_count()} CPUs")
    for name, seconds in stages.items():
        print(f"  {name:<14} {seconds:8.1f} s")
    print(f"  {'target total':<14} {target_s:8.1f} s   (cold: data + tokenizer + target model)")
    if both_s is not None:
        print(f"  {'with gold':<14} {both_s:8.1f} s   (cold, the gold model training in parallel)")
    print(f"  {'cache hit':<14} {hit_s:8.3f} s")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
