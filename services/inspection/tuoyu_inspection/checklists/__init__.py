"""The checklist templates the service ships, one JSON file per template version
(``<template_id>.v<N>.json``), published by the data migration ``default-checklists``."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def default_checklists() -> list[dict[str, Any]]:
    """The latest shipped version of each template."""
    folder = resources.files(__name__)
    latest: dict[str, dict[str, Any]] = {}
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if f.name.endswith(".json"):
            template = json.loads(f.read_text(encoding="utf-8"))
            known = latest.get(template["template_id"])
            if known is None or known["version"] < template["version"]:
                latest[template["template_id"]] = template
    return [latest[k] for k in sorted(latest)]
