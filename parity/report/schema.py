"""Versioned JSON Schemas shipped in the package; a report that does not validate is a bug."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

REPORT_SCHEMA = "report.v1.json"
SWEEP_SCHEMA = "sweep.v1.json"


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files("parity.report").joinpath("schemas", name).read_text())


def validate(document: dict[str, Any], schema_name: str) -> None:
    """Raise jsonschema.ValidationError if the document breaks its schema."""
    import jsonschema

    schema = load_schema(schema_name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def write_json(document: dict[str, Any], path: Path, schema_name: str) -> Path:
    """Validate, then write atomically (temp file + rename)."""
    validate(document, schema_name)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path
