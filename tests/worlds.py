"""What the tests know of the session's tiny world: whether it is the canonical one.

Some tests check properties of the canonical world's own models (its target says every answer); a machine
that builds another world (an Intel processor: README, "Which worlds are canonical") checks the rest.
"""

from __future__ import annotations

import pytest

from tasks.tiny.build import TinyBuild, canonical_differences


def is_canonical(build: TinyBuild) -> bool:
    """Whether ``build`` holds the canonical world's pinned bytes."""
    return canonical_differences(build) == []


def require_the_canonical_world(build: TinyBuild) -> None:
    """Skip the calling test, with the files that differ, where ``build`` is not the canonical world."""
    differs = canonical_differences(build)
    if differs:
        pytest.skip(
            f"this machine built another tiny world than the canonical one ({', '.join(differs)} differ): "
            "this test checks the canonical models' own properties"
        )
