"""Test data of the storage tests: Kubo's CID vectors and the content they were computed for.

A uniquely named module (not conftest) so that test files can import it whatever other conftest.py the suite
has loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "kubo_cids.json"


def generated(seed: str, size: int) -> bytes:
    """Content as the fixture's "generator" field says: shake_256(seed) of `size` bytes (empty for 0)."""
    return hashlib.shake_256(seed.encode()).digest(size) if size else b""


def kubo_vectors() -> list[dict]:
    return json.loads(FIXTURE.read_text())["vectors"]
