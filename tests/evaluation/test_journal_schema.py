"""The journal schema: shipped, valid, fits what the runner writes, refuses what it does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from gauge import Task, eval_async, get_model
from gauge.dataset import Sample
from gauge.evaluation.journal import JournalError
from gauge.evaluation.journal_schema import SCHEMA_VERSION, schema, validate_journal
from gauge.evaluation.runner import EvalError
from gauge.evaluation.solver import Generate
from gauge.evaluation.state import TaskState
from gauge.scorer import match


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def rewrite(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return path


async def remember(state: TaskState, generate: Generate) -> TaskState:
    state = await generate(state)
    state.store["said"] = state.output.completion if state.output else None
    return state


def test_the_schema_ships_with_the_package_and_is_valid_2020_12() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$defs"]["header"]["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    shipped = Path(__import__("gauge").__file__).parent / "evaluation" / "journal.schema.json"
    assert orjson.loads(shipped.read_bytes())["$id"].endswith(f"/{SCHEMA_VERSION}.json")


async def test_every_record_a_stopped_and_resumed_run_writes_fits(tmp_path: Path) -> None:
    samples = [Sample(input=str(i), target=str(i), id=i, metadata={"k": i}) for i in range(6)]
    task = Task(samples, solver=remember, scorer=match(), epochs=2, name="t")
    failing = get_model("mock/m", memoize=False, errors=["fatal", "fatal"])
    with pytest.raises(EvalError, match="more than --max-errors 1"):
        await eval_async(
            task, failing, log_dir=tmp_path, max_errors=1, max_samples=1, display=False
        )
    [path] = tmp_path.glob("*.jsonl")
    assert validate_journal(path) == len(records(path))
    await eval_async(task, get_model("mock/m", memoize=False), resume=path, display=False)
    lines = records(path)
    assert {x["type"] for x in lines} == {"header", "sample", "not_run", "resume", "summary"}
    assert lines[0]["schema_version"] == SCHEMA_VERSION
    errors = [x["error"] for x in lines if x["type"] == "sample" and x["error"]]
    assert len(errors) == 2 and errors[0]["type"] == "MockFatalError"
    stored = [x for x in lines if x["type"] == "sample" and "store" in x]
    assert stored and all(x["store"]["said"] == str(x["id"]) for x in stored)
    assert validate_journal(path) == len(lines)


async def test_a_record_that_strays_from_the_schema_is_named(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    [result] = await eval_async(
        Task([Sample(input="a", target="a")], scorer=match()),
        "mock/echo",
        log_dir=tmp_path,
        display=False,
    )
    header, sample, summary = records(Path(result.journal))
    # Written outside tmp_path: these journals break the schema on purpose (conftest checks it).
    bad = tmp_path_factory.mktemp("bad") / "j.jsonl"

    def problem(lines: list[dict[str, Any]]) -> str:
        with pytest.raises(JournalError) as caught:
            validate_journal(rewrite(bad, lines))
        return str(caught.value)

    assert problem([header, sample | {"latency": 1.0}, summary]) == (
        f"{bad}:2: sample record, at (record): Additional properties are not allowed "
        "('latency' was unexpected)"
    )
    usage = sample["usage"] | {"input_tokens": "1"}
    assert problem([header, sample | {"usage": usage}, summary]).startswith(
        f"{bad}:2: sample record, at usage"
    )
    no_version = {k: v for k, v in header.items() if k != "schema_version"}
    assert problem([no_version, sample]) == (
        f"{bad}:1: header record, at (record): 'schema_version' is a required property"
    )
    assert "'progress' is not one of" in problem([header, {"type": "progress"}])
    assert problem([sample, header]) == f"{bad}:1: a journal starts with a header line"
    assert "summary record, at status" in problem([header, summary | {"status": "done"}])
    # A torn last line is what a killed run leaves: allowed. Anywhere else it is not.
    bad.write_bytes(orjson.dumps(header) + b"\n" + orjson.dumps(sample) + b'\n{"type": "sam')
    assert validate_journal(bad) == 2
    bad.write_bytes(orjson.dumps(header) + b'\n{"type": "sam\n' + orjson.dumps(sample) + b"\n")
    with pytest.raises(JournalError, match=r"j.jsonl:2: not JSON, and not the last line"):
        validate_journal(bad)


async def test_the_suite_checks_each_line_a_run_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_lines_fit_the_schema: list[str]
) -> None:
    from gauge.evaluation import sample

    usage_dict = sample._usage_dict
    monkeypatch.setattr(sample, "_usage_dict", lambda u: usage_dict(u) | {"joules": 1.5})
    task = Task([Sample(input="a b", target="a b")], scorer=match())
    await eval_async(task, "mock/echo", log_dir=tmp_path, display=False)
    assert journal_lines_fit_the_schema == [
        "sample record, at usage: Additional properties are not allowed ('joules' was unexpected)"
    ]
    journal_lines_fit_the_schema.clear()  # seen: the fixture's own check passes
