"""Versioned JSON Schemas shipped in the package; a report that does not validate is a bug.

Versions and what changed: parity/report/schemas/CHANGES.md.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

REPORT_SCHEMA = "report.v2.json"
SWEEP_SCHEMA = "sweep.v2.json"


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("parity.report").joinpath("schemas", name).read_text())


@cache
def _validator(name: str) -> Any:
    import jsonschema

    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(document: dict[str, Any], schema_name: str) -> None:
    """Raise jsonschema.ValidationError if the document breaks its schema."""
    _validator(schema_name).validate(document)


def write_json(document: dict[str, Any], path: Path, schema_name: str) -> Path:
    """Validate, then write atomically (temp file + rename)."""
    validate(document, schema_name)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path
