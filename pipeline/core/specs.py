"""Canonical form of a config slice: the JSON that rules pass as params and the hash that
artifacts and caches are keyed by. Pure functions, no project imports: config, artifacts and
the stages all use them without importing one another."""

from __future__ import annotations

import hashlib
import json


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def spec_hash(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]
