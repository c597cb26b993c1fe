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


def check(doc: object) -> None:
    """Raise :class:`ManifestError` naming the first field of ``doc`` that breaks the schema."""
    error = best_match(_VALIDATOR.iter_errors(doc))
    if error is None:
        return
    where = ".".join(str(part) for part in error.absolute_path) or "manifest"
    message = error.message
    if len(message) > 200:  # an enum failure quotes the whole region list
        message = message[:200] + "..."
    raise ManifestError(f"{where}: {message}")


def is_region(code: str) -> bool:
    return code in REGION_CODES
