"""The manifest's JSON Schema (``manifest.schema.json``), shared by ``encore-origin`` and the edge.

The schema file is the documented contract and the one list of valid region codes. Both the
write side (before a manifest is uploaded) and the read side (before an edge trusts it) run
:func:`check` on the parsed JSON document.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

SCHEMA_FILE = "manifest.schema.json"


class ManifestError(ValueError):
    """The manifest is not one this code can trust; the message says which field and why."""


def _load() -> dict[str, Any]:
    text = resources.files("origin").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


SCHEMA = _load()
_VALIDATOR = Draft202012Validator(SCHEMA)

REGION_CODES: frozenset[str] = frozenset(SCHEMA["$defs"]["region"]["enum"])
"""ISO 3166-1 alpha-2 codes that are officially assigned."""


def check(doc: object, *, seek_points: bool = True) -> None:
    """Raise :class:`ManifestError` naming the first field of ``doc`` that breaks the schema.

    ``seek_points=False`` leaves the seek points out (the caller checks them in code, as
    :class:`~origin.seek_table.SeekTable` does): validating thousands of small arrays one by
    one costs tens of milliseconds, too much for an edge's event loop.
    """
    if not seek_points:
        doc = _without_seek_points(doc)
    if _VALIDATOR.is_valid(doc):
        return
    error = best_match(_VALIDATOR.iter_errors(doc))
    where = ".".join(str(part) for part in error.absolute_path) or "manifest"
    message = error.message
    if len(message) > 200:  # an enum failure quotes the whole region list
        message = message[:200] + "..."
    raise ManifestError(f"{where}: {message}")


def _without_seek_points(doc: object) -> object:
    renditions = doc.get("renditions") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(renditions, dict):
        return doc
    trimmed = {}
    for name, rendition in renditions.items():
        table = rendition.get("seek_table") if isinstance(rendition, dict) else None
        if isinstance(table, dict) and isinstance(table.get("points"), list):
            trimmed[name] = {**rendition, "seek_table": {**table, "points": []}}
        else:
            trimmed[name] = rendition
    return {**doc, "renditions": trimmed}


def is_region(code: str) -> bool:
    return code in REGION_CODES
