"""Batch jobs in the journal: written durably before waiting, read back on resume."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge import Task
from gauge.dataset import Sample
from gauge.evaluation import journal as journal_module
from gauge.evaluation.batch_progress import BatchBoard
from gauge.evaluation.batches import (
    JournalLedger,
    journal_records,
    left_summary,
    record_line,
    take_left_running,
)
from gauge.evaluation.journal import JournalWriter, read_journal
from gauge.evaluation.redact import Redactor
from gauge.evaluation.runner import eval_async
from gauge.model.batch.api import BatchRecord, batch_ledger, batch_observer
from gauge.model.factory import get_model
from gauge.model.model import Model
from gauge.scorer import match
from gauge.testing.openai_batch_server import OpenAIBatchServer

FAST = {"size": 4, "send_delay": 0.05, "tick": 0.05, "max_tick": 0.1}


def record(job_id: str, ids: list[str], state: Any = "validating") -> BatchRecord:
    return BatchRecord(job_id, "openai", "gpt-4o-mini", ids, 1765000000.0, state)


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines()]


@pytest.fixture
def writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JournalWriter]:
    # Buffered lines would reach the file only after an hour: what is there came from write_now.
    monkeypatch.setattr(journal_module, "FLUSH_SECONDS", 3600.0)
    out = JournalWriter(tmp_path / "j.jsonl", Redactor())
    out.write({"type": "header", "task": {"name": "t"}})
    yield out
    out.close()


def test_submitted_is_on_disk_before_it_returns(writer: JournalWriter) -> None:
    ledger = JournalLedger(writer)
    writer.write({"type": "sample", "id": 1, "epoch": 1, "error": None})
    assert writer.path.read_bytes() == b""  # buffered so far
    ledger.submitted(record("batch_1", ["a-0", "b-0"]))
    # Another handle sees it (and the lines before it) at once, as a new process would.
    with open(writer.path, "rb") as other:
        seen = [orjson.loads(raw) for raw in other.read().splitlines()]
    assert [x["type"] for x in seen] == ["header", "sample", "batch"]
    line = seen[-1]
    assert line["event"] == "submitted" and line["job_id"] == "batch_1"
    assert line["custom_ids"] == ["a-0", "b-0"] and line["state"] == "validating"
    assert (line["provider"], line["model"], line["submitted"]) == (
        "openai",
        "gpt-4o-mini",
        1765000000.0,
    )
    assert line["time"].startswith("20")
    assert ledger.active == {"batch_1": ledger.active["batch_1"]}
    done = record("batch_1", ["a-0", "b-0"], "completed")
    ledger.finished(done)
    last = lines(writer.path)[-1]
    assert (last["event"], last["job_id"], last["state"]) == ("finished", "batch_1", "completed")
    assert "custom_ids" not in last  # the submitted line holds them
    assert ledger.active == {}
    writer.close()


def test_resume_loads_jobs_and_finds_only_earlier_ones(writer: JournalWriter) -> None:
    first = JournalLedger(writer)
    first.submitted(record("batch_1", ["a-0", "b-0"]))
    first.submitted(record("batch_2", ["c-0"]))
    first.submitted(record("batch_3", ["d-0"]))
    first.finished(record("batch_2", ["c-0"], "completed"))
    first.finished(record("batch_3", ["d-0"], "failed"))
    assert first.find("a-0") is None  # this run's own jobs are not "found"
    writer.close()

    journal = read_journal(writer.path)
    assert list(journal.batches) == ["batch_1", "batch_2", "batch_3"]
    assert journal.batches["batch_2"]["finished"] is True
    assert "finished" not in journal.batches["batch_1"]
    loaded = {r.job_id: r for r in journal_records(journal)}
    assert {k: r.state for k, r in loaded.items()} == {
        "batch_1": "validating",
        "batch_2": "completed",
        "batch_3": "failed",
    }
    assert loaded["batch_1"].custom_ids == ["a-0", "b-0"]

    board = BatchBoard()
    appender = JournalWriter(writer.path, Redactor(), append=True)
    resumed = JournalLedger(appender, list(loaded.values()), board)
    found = resumed.find("b-0")
    assert found is not None and found.job_id == "batch_1"
    assert list(resumed.active) == ["batch_1"]  # in flight again (Ctrl-C counts it)
    assert list(board.jobs) == ["batch_1"] and "re-attached" in board.take_news()[0]
    # A finished job stays readable (its sample lines may have been lost in the kill),
    # but is not in flight; a job that failed as a whole is not re-attached.
    completed = resumed.find("c-0")
    assert completed is not None and completed.state == "completed"
    assert list(resumed.active) == ["batch_1"]
    assert resumed.find("d-0") is None
    assert resumed.find("zzz-0") is None
    # Finished in this run: forgotten, so an unanswered request goes into a new job.
    assert found is not None
    found.state = "expired"
    resumed.finished(found)
    assert resumed.find("a-0") is None and resumed.active == {}
    appender.close()


def test_a_later_job_for_the_same_request_wins(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "j.jsonl", Redactor())
    writer.write({"type": "header"})
    ledger = JournalLedger(writer)
    ledger.submitted(record("batch_1", ["a-0"]))
    ledger.finished(record("batch_1", ["a-0"], "expired"))
    ledger.submitted(record("batch_2", ["a-0"]))  # the retry of what batch_1 left
    writer.close()
    resumed = JournalLedger(writer, journal_records(read_journal(writer.path)))
    found = resumed.find("a-0")
    assert found is not None and found.job_id == "batch_2"


def test_unreadable_batch_lines_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    good = record("b1", ["x-0"], "in_progress")
    path.write_bytes(
        b'{"type": "header"}\n'
        + orjson.dumps(record_line("submitted", good))
        + b'\n{"type": "batch", "event": "submitted", "custom_ids": ["y-0"]}\n'  # no job id
        + b'{"type": "batch", "event": "submitted", "job_id": "b2", "state": "odd"}\n'
        + b'{"type": "batch", "event": "submitted", "job_id": "b3", "custom_ids": ["z'  # torn
    )
    journal = read_journal(path)
    assert journal.torn_lines == 1
    assert [r.job_id for r in journal_records(journal)] == ["b1"]


def test_enter_sets_the_context_and_ctrl_c_records_jobs_left_in_flight(
    writer: JournalWriter,
) -> None:
    board = BatchBoard()
    ledger = JournalLedger(writer, board=board)
    take_left_running()
    undo = ledger.enter()
    assert batch_ledger.get() is ledger and batch_observer.get() is board
    undo()
    assert batch_ledger.get() is None and batch_observer.get() is None
    ledger.interrupted("j.jsonl", model=None)  # type: ignore[arg-type]
    assert take_left_running() == []  # nothing in flight: nothing to ask about
    ledger.submitted(record("batch_9", ["q-0", "r-0"]))
    ledger.submitted(record("batch_10", ["s-0"]))
    ledger.finished(record("batch_10", ["s-0"], "completed"))
    ledger.interrupted("j.jsonl", model=None)  # type: ignore[arg-type]
    [left] = take_left_running()
    assert left.journal == "j.jsonl" and [j.job_id for j in left.jobs] == ["batch_9"]
    assert left_summary([left]) == "1 batch job (2 requests)"
    assert take_left_running() == []


def echo_task(n: int) -> Task:
    return Task([Sample(input=f"q{i}", target=f"q{i}", id=i) for i in range(n)], scorer=match())


async def test_an_interrupted_batch_eval_resumes_without_submitting_twice(
    tmp_path: Path,
) -> None:
    async with OpenAIBatchServer(polls=1000) as server:
        models: list[Model] = []

        def model() -> Model:
            # A model of its own per run, as a resumed process has (custom ids count
            # identical requests per model: gauge.model.batch.ids).
            models.append(
                get_model(
                    "openai/gpt-4o-mini", base_url=server.url, api_key="sk-test", memoize=False
                )
            )
            return models[-1]

        args: dict[str, Any] = {"log_dir": tmp_path, "display": False, "batch": FAST}
        run = asyncio.ensure_future(eval_async(echo_task(10), model(), **args))
        while len(server.jobs) < 3:  # 4 + 4 + 2 requests, all in flight
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        [path] = tmp_path.glob("*.jsonl")
        [left] = take_left_running()
        assert sorted(j.job_id for j in left.jobs) == ["batch_1", "batch_2", "batch_3"]
        assert sum(len(j.custom_ids) for j in left.jobs) == 10
        assert read_journal(path).samples == {}
        for job in server.jobs.values():
            job.polls_left = 2  # the jobs finish while the resumed run waits on them
        [result] = await eval_async(echo_task(10), model(), resume=path, **args)
        for each in models:
            await each.close()
    assert result.status == "success" and result.completed == 10
    assert len(server.submissions) == 10 and set(server.submissions.values()) == {1}
    assert len(server.jobs) == 3 and server.realtime == 0
    journal = read_journal(path)
    assert sorted(key[0] for key in journal.samples) == list(range(10))
    assert all(line["scores"]["match"]["value"] == "C" for line in journal.samples.values())
    batch_lines = [x for x in lines(path) if x["type"] == "batch"]
    events = [(x["event"], x["job_id"]) for x in batch_lines if x["event"] != "intent"]
    assert events[:3] == [("submitted", f"batch_{i}") for i in (1, 2, 3)]
    assert sorted(events[3:]) == [("finished", f"batch_{i}") for i in (1, 2, 3)]
    # Each job was announced by an intent line first, and carries its token.
    tokens = [x["token"] for x in batch_lines if x["event"] == "intent"]
    assert len(set(tokens)) == 3
    assert sorted(x["token"] for x in batch_lines if x["event"] == "submitted") == sorted(tokens)
    assert {j.metadata["gauge_token"] for j in server.jobs.values() if j.metadata} == set(tokens)


def test_a_job_created_after_the_run_ended_is_named_in_a_warning(
    writer: JournalWriter, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = JournalLedger(writer)
    ledger.submitted(record("batch_1", ["a-0"]))
    writer.close()
    size = writer.path.stat().st_size
    ledger.finished(record("batch_1", ["a-0"], "completed"))  # a resume reads it again
    ledger.submitted(record("batch_2", ["b-0"]))
    assert writer.path.stat().st_size == size
    [warning] = caplog.records
    assert warning.levelname == "WARNING"
    assert warning.getMessage() == (
        "batch job batch_2 (gpt-4o-mini) was created after its run ended, so no journal "
        "records it; cancel it at openai if you do not want it"
    )


def test_ctrl_c_question_defaults_to_leave(
    writer: JournalWriter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import click

    from gauge.cli.eval import _left_batches

    ledger = JournalLedger(writer)
    ledger.submitted(record("batch_1", ["a-0"]))
    asked: list[str] = []

    def second_ctrl_c(question: str, *args: Any, **kwargs: Any) -> str:
        asked.append(question)
        raise click.Abort

    monkeypatch.setattr(click, "prompt", second_ctrl_c)
    ledger.interrupted("logs/run one.jsonl", model=None)  # type: ignore[arg-type]
    _left_batches(interactive=True)
    assert asked == [
        "leave 1 batch job (1 request) running (resume later with "
        "gauge eval --resume 'logs/run one.jsonl') [L]eave/[c]ancel"
    ]
    err = capsys.readouterr().err
    assert err.endswith(
        "left 1 batch job (1 request) running; "
        "gauge eval --resume 'logs/run one.jsonl' re-attaches to them\n"
    )
    _left_batches(interactive=True)  # nothing left: nothing asked
    assert len(asked) == 1


def test_an_intent_is_on_disk_before_it_returns_and_read_back_until_resolved(
    writer: JournalWriter,
) -> None:
    ledger = JournalLedger(writer)
    intent = BatchRecord("", "openai", "gpt-4o-mini", ["a-0", "b-0"], 1765000000.0, token="t1")
    ledger.intended(intent)
    with open(writer.path, "rb") as other:
        line = [orjson.loads(raw) for raw in other.read().splitlines()][-1]
    assert line == {
        "type": "batch",
        "event": "intent",
        "token": "t1",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "custom_ids": ["a-0", "b-0"],
        "submitted": 1765000000.0,
        "time": line["time"],
    }
    ledger.intended(BatchRecord("", "openai", "gpt-4o-mini", ["c-0"], 1765000001.0, token="t2"))
    made = BatchRecord("batch_2", "openai", "gpt-4o-mini", ["c-0"], 1765000001.0, token="t2")
    ledger.submitted(made)  # t2's job was created and recorded; t1's create was cut off
    writer.close()
    journal = read_journal(writer.path)
    assert list(journal.intents) == ["t1", "t2"] and list(journal.batches) == ["batch_2"]
    loaded = journal_records(journal)
    assert [(r.job_id, r.token, r.intent) for r in loaded] == [
        ("", "t1", True),
        ("batch_2", "t2", False),
    ]

    board = BatchBoard()
    appender = JournalWriter(writer.path, Redactor(), append=True)
    resumed = JournalLedger(appender, loaded, board)
    assert set(resumed.jobs()) == {"batch_2"}
    found = resumed.find("a-0")
    assert found is not None and found.intent and found.token == "t1"
    assert resumed.active == {} and list(board.jobs) == []  # not in flight until found
    found.job_id = "batch_1"  # the provider's list showed a job tagged t1
    resumed.resolved(found)
    assert list(resumed.active) == ["batch_1"] and set(resumed.jobs()) == {"batch_1", "batch_2"}
    assert list(board.jobs) == ["batch_1"]
    last = lines(writer.path)[-1]
    assert (last["event"], last["job_id"], last["token"]) == ("submitted", "batch_1", "t1")
    assert resumed.find("b-0") is found  # the job now, not an intent
    appender.close()
    # Resolved on disk: a later resume sees the job, not the intent.
    again = journal_records(read_journal(writer.path))
    assert sorted((r.job_id, r.token) for r in again) == [("batch_1", "t1"), ("batch_2", "t2")]


def test_an_intent_found_to_have_no_job_is_forgotten(writer: JournalWriter) -> None:
    ledger = JournalLedger(writer)
    ledger.intended(BatchRecord("", "openai", "gpt-4o-mini", ["a-0"], 1765000000.0, token="t"))
    writer.close()
    appender = JournalWriter(writer.path, Redactor(), append=True)
    resumed = JournalLedger(appender, journal_records(read_journal(writer.path)))
    found = resumed.find("a-0")
    assert found is not None and found.intent
    resumed.resolved(found)  # job_id "": never created
    assert resumed.find("a-0") is None and resumed.active == {}
    appender.close()


def test_an_intent_after_the_run_ended_creates_no_job(writer: JournalWriter) -> None:
    ledger = JournalLedger(writer)
    writer.close()
    with pytest.raises(RuntimeError, match="the run ended before its batch job was created"):
        ledger.intended(BatchRecord("", "openai", "m", ["a-0"], 1765000000.0, token="t"))


def without_submitted_lines(path: Path) -> None:
    """The journal a kill inside each create call leaves: intents, no submitted lines."""
    kept = [x for x in lines(path) if not (x["type"] == "batch" and x["event"] != "intent")]
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in kept))


@pytest.mark.parametrize("job_exists", [True, False])
async def test_a_resume_resolves_intents_cut_off_inside_the_create_call(
    tmp_path: Path, job_exists: bool
) -> None:
    async with OpenAIBatchServer(polls=1000) as server:
        models: list[Model] = []

        def model() -> Model:
            models.append(
                get_model(
                    "openai/gpt-4o-mini", base_url=server.url, api_key="sk-test", memoize=False
                )
            )
            return models[-1]

        args: dict[str, Any] = {"log_dir": tmp_path, "display": False, "batch": FAST}
        run = asyncio.ensure_future(eval_async(echo_task(10), model(), **args))
        while len(server.jobs) < 3:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        take_left_running()
        [path] = tmp_path.glob("*.jsonl")
        without_submitted_lines(path)
        journal = read_journal(path)
        assert journal.batches == {} and len(journal.intents) == 3
        if job_exists:
            for job in server.jobs.values():
                job.polls_left = 2
        else:  # the creates never reached the provider
            server.jobs.clear()
            server.submissions.clear()
        server.polls = 2
        [result] = await eval_async(echo_task(10), model(), resume=path, **args)
        for each in models:
            await each.close()
    assert result.status == "success" and result.completed == 10
    assert len(server.submissions) == 10 and set(server.submissions.values()) == {1}
    assert len(server.jobs) == 3 and server.realtime == 0
    listed = [x for x in server.seen if x[:2] == ("GET", "/v1/batches")]
    assert len(listed) == 3  # each intent looked up once
    batch_lines = [x for x in lines(path) if x["type"] == "batch"]
    submitted = {x["token"]: x["job_id"] for x in batch_lines if x["event"] == "submitted"}
    if job_exists:  # re-attached: the jobs found, recorded under the intents' tokens
        assert submitted == {
            j.metadata["gauge_token"]: j.id for j in server.jobs.values() if j.metadata
        }
        assert set(submitted) == set(journal.intents)
    else:  # sent anew, under new intents
        assert len(submitted) == 3 and not set(submitted) & set(journal.intents)
