"""The subsidy programs the service ships, one JSON file per year (``<year>.json``: a list of
programs, each ``{code, kind, title, year, terms, document}``), published as program versions
by the data migration ``default-programs`` whenever a shipped version differs from the latest
published one. A district publishes its own through ``POST /api/subsidy/programs``."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def default_programs() -> list[dict[str, Any]]:
    folder = resources.files(__name__)
    found: list[dict[str, Any]] = []
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if f.name.endswith(".json"):
            found.extend(json.loads(f.read_text(encoding="utf-8")))
    return found
