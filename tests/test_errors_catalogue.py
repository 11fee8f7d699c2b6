"""Every row of docs/errors.md, run: the doc and the code cannot drift apart.

A row's input is one of:

    gauge ...                       the CLI, in process (VAR=value before it sets env vars)
    python: EXPR                    a library call (awaited if it returns a coroutine)
    POST /path BODY | GET /path     gauge serve (mock engine, key sk-serve) over ASGI;
                                    `[no key]`, `[key K]` or `[busy]` in front change how
                                    it is sent; `raw` before BODY sends it as bytes

and its error must be exactly the row's one line: the CLI's last line (with a
non-zero exit code), `Type: message` for the library, `HTTP status: message`
for the server. `{journal}` stands for a journal path. No output may hold a
traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import re
import shlex
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gauge.errors import one_line

DOC = Path(__file__).parents[1] / "docs" / "errors.md"
SRC = Path(__file__).parents[1] / "src"
ROW = re.compile(r"^\|\s*(\d+)\s*\|(.*)\|\s*$")
FILE = re.compile(r"^`([\w.-]+)`[^\n]*:\n\n```\w*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PLACEHOLDERS = {"{journal}": r"logs/\S+\.jsonl"}
SERVE_KEY = "sk-serve"


def _rows() -> list[tuple[int, str, str, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        found = ROW.match(line)
        if found:
            given, error, where = (_code(cell) for cell in found.group(2).split(" | "))
            rows.append((int(found.group(1)), given, error, where))
    return rows


def _code(cell: str) -> str:
    """The text of a markdown code span: `x`, or `` x `` when x holds a backtick."""
    cell = cell.strip()
    if cell.startswith("`` ") and cell.endswith(" ``"):
        return cell[3:-3]
    assert cell.startswith("`") and cell.endswith("`") and len(cell) > 1, cell
    return cell[1:-1]


ROWS = _rows()
FILES = dict(FILE.findall(DOC.read_text()))


def test_the_catalogue_has_at_least_40_numbered_rows_and_its_files() -> None:
    assert len(ROWS) >= 40
    assert [r[0] for r in ROWS] == list(range(1, len(ROWS) + 1))
    assert {"task.py", "bad.jsonl"} <= set(FILES)


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("number", "given", "error", "where"), ROWS, ids=[str(r[0]) for r in ROWS])
def test_row(
    number: int,
    given: str,
    error: str,
    where: str,
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve_client: Any,
) -> None:
    assert (SRC / where.split(":")[0]).is_file(), f"row {number}: no source file {where}"
    if given.startswith("python: "):
        got = _library(given.removeprefix("python: "))
    elif given.split(" ", 1)[0] in ("POST", "GET") or given.startswith("["):
        got = serve_client(given)
    else:
        code, output = _cli(given, monkeypatch)
        assert code not in (0, None), f"row {number}: exit code {code}\n{output}"
        assert "Traceback" not in output, output
        lines = [line for line in output.splitlines() if line.strip()]
        got = lines[-1] if lines else ""
    pattern = re.escape(error)
    for name, regex in PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(name), regex)
    assert re.fullmatch(pattern, got), f"row {number}:\n doc: {error}\n got: {got}"
    assert "\n" not in got and "Traceback" not in got


# -- the CLI --------------------------------------------------------------------------------


def _cli(command: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    from gauge.cli.main import main

    words = shlex.split(command)
    while words[0] != "gauge":
        name, _, value = words.pop(0).partition("=")
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(words[1:])
            code: Any = 0
        except SystemExit as ex:
            code = ex.code
    return code, out.getvalue()


# -- the library ----------------------------------------------------------------------------


def _library(expression: str) -> str:
    from gauge import get_model, model_from_config
    from gauge.dataset import csv_dataset, json_dataset
    from gauge.model.config import GenerateConfig
    from gauge.model.sync_models import DummyModel, OpenAIModel

    names = {
        "GenerateConfig": GenerateConfig,
        "get_model": get_model,
        "model_from_config": model_from_config,
        "OpenAIModel": OpenAIModel,
        "DummyModel": DummyModel,
        "json_dataset": json_dataset,
        "csv_dataset": csv_dataset,
        "ask": ask,
    }
    try:
        result = eval(expression, names)
        if inspect.isawaitable(result):
            asyncio.run(_awaited(result))
    except Exception as ex:
        return f"{type(ex).__name__}: {one_line(ex)}"
    return "(no error)"


async def _awaited(result: Any) -> Any:
    return await result


async def ask(model: str, answer: tuple[int, Any] | None = None, **config: Any) -> None:
    """Send "hi" to `model` through a mock OpenAI server that answers `answer` (status, body).

    A str body is sent as raw bytes. The model gets key sk-test, no retries.
    """
    from gauge import get_model
    from gauge.model.config import GenerateConfig
    from gauge.testing.openai_server import OpenAIServer

    async with OpenAIServer() as server:
        if answer is not None:
            status, body = answer
            if isinstance(body, str):
                server.script(status=status, raw=body.encode())
            else:
                server.script(status=status, json=body)
        llm = get_model(model, base_url=server.url, api_key="sk-test", memoize=False)
        try:
            await llm.generate("hi", config=GenerateConfig(max_retries=0, **config))
        finally:
            await llm.close()


# -- the server -----------------------------------------------------------------------------


class _Client:
    """gauge serve (mock engine, key sk-serve, one request at a time) in process."""

    def __init__(self) -> None:
        from starlette.testclient import TestClient

        from gauge.serve.app import build_app
        from gauge.serve.engines.mock import MockEngine
        from gauge.serve.settings import Settings

        settings = Settings(
            engine="mock",
            model_name="mock-model",
            api_key=SERVE_KEY,
            max_concurrency=1,
            disable_log_stats=True,
            disable_log_requests=True,
        )

        class GatedEngine(MockEngine):
            """Holds a request while `hold` is set (for the [busy] rows)."""

            hold = threading.Event()

            async def generate(self, request: Any) -> Any:
                while self.hold.is_set():
                    await asyncio.sleep(0.01)
                return await super().generate(request)

        self.engine = GatedEngine("mock-model")
        self.app = build_app(self.engine, settings)
        self.client = TestClient(self.app)

    def __enter__(self) -> _Client:
        self.client.__enter__()
        deadline = time.monotonic() + 30
        while self.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the mock engine did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    def __call__(self, given: str) -> str:
        headers = {"Authorization": f"Bearer {SERVE_KEY}", "Content-Type": "application/json"}
        busy = False
        while given.startswith("["):
            modifier, _, given = given[1:].partition("] ")
            if modifier == "no key":
                del headers["Authorization"]
            elif modifier.startswith("key "):
                headers["Authorization"] = f"Bearer {modifier.removeprefix('key ')}"
            elif modifier == "busy":
                busy = True
            else:
                raise AssertionError(f"unknown modifier [{modifier}]")
        method, _, rest = given.partition(" ")
        path, _, body = rest.partition(" ")
        content = body.removeprefix("raw ").encode() if body else None
        if body and not body.startswith("raw "):
            content = orjson.dumps(orjson.loads(body))
        with self._occupied() if busy else contextlib.nullcontext():
            reply = self.client.request(method, path, content=content, headers=headers)
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        return f"HTTP {reply.status_code}: {error['message']}"

    @contextlib.contextmanager
    def _occupied(self) -> Iterator[None]:
        """One slow request holds the server's only slot meanwhile."""
        server = self.app.state.server
        self.engine.hold.set()  # type: ignore[attr-defined]
        body = {"model": "mock-model", "messages": [{"role": "user", "content": "slow"}]}
        headers = {"Authorization": f"Bearer {SERVE_KEY}"}
        slow = threading.Thread(
            target=self.client.post,
            args=("/v1/chat/completions",),
            kwargs={"json": body, "headers": headers},
        )
        slow.start()
        try:
            deadline = time.monotonic() + 30
            while server.metrics.running < 1:
                assert time.monotonic() < deadline, "the slow request never started"
                time.sleep(0.01)
            yield
        finally:
            self.engine.hold.clear()  # type: ignore[attr-defined]
            slow.join(timeout=30)


@pytest.fixture(scope="module")
def _server() -> Iterator[_Client]:
    with _Client() as client:
        yield client


@pytest.fixture
def serve_client(_server: _Client) -> _Client:
    return _server
