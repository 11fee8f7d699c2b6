"""The journal's JSON Schema (journal.schema.json, shipped with the package) and a checker.

`SCHEMA_VERSION` is what a header's `schema_version` says; docs/journal.md gives
the versioning policy. `validate_journal(path)` checks every line of a journal
against the schema (it needs `jsonschema`, a dev dependency); the test suite runs
it on every journal the tests write, so a record changed without its schema
fails there.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

from gauge.evaluation.journal import JournalError, iter_lines

SCHEMA_VERSION = 1
"""The journal schema this gauge writes (the header's `schema_version`)."""


def schema() -> dict[str, Any]:
    """The journal record schema (JSON Schema 2020-12) as a dict."""
    return dict(_schema())


@functools.cache
def _schema() -> dict[str, Any]:
    text = resources.files("gauge.evaluation").joinpath("journal.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def _validator() -> Any:
    # Built (and the schema checked) once per process.
    try:
        from jsonschema import Draft202012Validator
    except ModuleNotFoundError:
        raise JournalError(
            "validating a journal needs jsonschema: pip install jsonschema"
        ) from None
    Draft202012Validator.check_schema(_schema())
    return Draft202012Validator(_schema())


@functools.cache
def _fast_check() -> Any:
    # jsonschema-rs (a dev dependency) says yes or no ~50x faster (~15 µs a line against
    # ~700): the test suite checks every journal it writes. jsonschema explains a no.
    try:
        import jsonschema_rs  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        return _validator().is_valid
    return jsonschema_rs.Draft202012Validator(_schema()).is_valid


def record_problem(record: Any) -> str | None:
    """Why `record` (one parsed journal line) breaks the schema, or None if it fits."""
    validator = _validator()
    if _fast_check()(record):
        return None
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(record))
    where = "/".join(str(p) for p in error.absolute_path) or "(record)"
    kind = record.get("type", "?") if isinstance(record, dict) else "?"
    return f"{kind} record, at {where}: {error.message}"


def validate_journal(path: str | Path) -> int:
    """Check every line of the journal at `path` against the schema; returns lines checked.

    Raises JournalError naming the first line that does not fit. A torn last line
    (a run killed mid-write, skipped by every reader) is allowed; a torn line
    anywhere else is not, since a resumed run cuts the torn tail before it appends.
    """
    path = Path(path)
    checked = 0
    torn: int | None = None
    for number, record in iter_lines(path):
        if torn is not None:
            raise JournalError(f"{path}:{torn}: not JSON, and not the last line")
        if record is None:
            torn = number
            continue
        if checked == 0 and record.get("type") != "header":
            raise JournalError(f"{path}:{number}: a journal starts with a header line")
        if (problem := record_problem(record)) is not None:
            raise JournalError(f"{path}:{number}: {problem}")
        checked += 1
    if checked == 0:
        raise JournalError(f"{path}: empty journal; it has no header line")
    return checked
