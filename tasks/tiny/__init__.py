"""The embedded tiny world: a seeded LUME-like benchmark and a tiny OLMo target, built on a CPU.

`build_tiny` builds (or reuses) a world in the cache; `tiny_spec` turns a build into the tiny `TaskSpec`;
`generate_world` / `write_world` are the pure data generator, usable without training anything.
"""

from tasks.tiny.build import TinyBuild, build_tiny, cache_key, default_cache_root, tiny_paths, tiny_spec
from tasks.tiny.world import World, generate_world, write_world

__all__ = [
    "TinyBuild",
    "World",
    "build_tiny",
    "cache_key",
    "default_cache_root",
    "generate_world",
    "tiny_paths",
    "tiny_spec",
    "write_world",
]
