"""`gauge view` writes one self-contained HTML viewer: every sample, transcripts, charts."""

import base64
import gzip
import json
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from gauge import Task
from gauge.cli.main import main
from gauge.dataset import Sample
from gauge.evaluation.runner import eval_async
from gauge.log import read_log
from gauge.scorer import match


async def make_logs(tmp_path: Path, samples: int = 10) -> list[str]:
    data = [
        Sample(input=f"<b>{i}</b>", target=f"<b>{i}</b>" if i % 2 else "x", id=i,
               metadata={"parity": "odd" if i % 2 else "even"})
        for i in range(samples)
    ]  # fmt: skip
    task = Task(data, scorer=match(), name="html")
    results = await eval_async(task, ["mock/a", "mock/b"], log_dir=tmp_path / "logs", display=False)
    bad = await eval_async(
        task,
        "mock/bad",
        model_args={"errors": ["fatal", "fatal"]},
        max_errors=5,
        log_dir=tmp_path / "logs",
        display=False,
    )
    return [r.journal for r in [*results, *bad]]


def chunk(html: str, name: str) -> Any:
    """Decode one embedded gzip+base64 chunk the way the page's script does."""
    found = re.search(
        rf'<script type="application/octet-stream" id="{name}">([^<]*)</script>', html
    )
    assert found, name
    return json.loads(gzip.decompress(base64.b64decode(found.group(1))))


def view(*args: str) -> None:
    try:
        main(["view", *args])
    except SystemExit as ex:  # pragma: no cover - a failure shows the code
        raise AssertionError(ex.code) from None


async def test_viewer_has_every_sample_transcripts_and_no_external_resources(
    tmp_path: Path,
) -> None:
    journals = await make_logs(tmp_path, samples=60)  # more than the old page's 50
    log = read_log(journals[2])
    assert len(log.rows) == 60 and sum(1 for r in log.rows if r["error"]) == 2
    view(str(tmp_path / "logs"), "-o", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)  # opens offline
    assert "fetch(" in html and 'fetch("version"' in html  # only live mode asks the server
    meta = json.loads(re.search(r'id="gauge-meta">(.*?)</script>', html, re.S).group(1))
    assert [r["label"] for r in meta["runs"]] == [
        "html · mock/a",
        "html · mock/b",
        "html · mock/bad",
    ]
    assert meta["live"] is None and meta["runs"][2]["errors"] == 2
    # Every sample is in the table rows, with its metadata and error message.
    rows = chunk(html, "rows-2")
    assert len(rows) == 60 and {r["id"] for r in rows} == set(range(60))
    failed = [r for r in rows if r["err"]]
    assert [r["id"] for r in failed] == [0, 1]
    assert failed[0]["err"] == "MockFatalError: mock fatal error (injected)"
    seven = next(r for r in rows if r["id"] == 7)
    assert seven["s"] == {"match": "C"} and seven["n"] == 1.0 and seven["md"] == {"parity": "odd"}
    assert seven["in"] == "<b>7</b>" and seven["out"] == "<b>7</b>"
    # Transcripts: 60 samples make one chunk of 250; the error keeps its attempts.
    details = chunk(html, "detail-2-0")
    assert len(details) == 60
    assert details[0]["error"]["attempts"][0]["kind"] == "fatal"
    assert details[7]["messages"] == [{"role": "user", "content": "<b>7</b>"}]
    assert details[7]["output"]["choices"][0]["message"]["content"] == "<b>7</b>"
    assert details[7]["scores"]["match"] == {"value": "C", "answer": "<b>7</b>"}
    # The overview is plain HTML: the error message (not just its type), escaped text.
    assert "<td>MockFatalError: mock fatal error (injected)</td>" in html
    assert "<b>7</b>" not in html.split('id="gauge-meta"')[0]
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    titles = [ET.fromstring(s).find("{http://www.w3.org/2000/svg}text").text for s in svgs]
    assert titles == [
        "score (match/accuracy)",
        "cost per run (USD)",
        "latency per model call (s): bar p50, whisker to p90",
        "tokens per run",
        "sample errors",
    ]
    # mock models have no price: their cost is unknown, never $0
    assert html.count("<td>unknown</td>") == 3 and "$0.0000" not in html
    assert svgs[1].count("unknown (no price)") == 3 and "<rect" not in svgs[1]


def test_view_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as ex:
        main(["view", str(tmp_path / "empty")])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no .jsonl journals") and err.count("\n") == 1
    (tmp_path / "x.jsonl").write_text("not json\n")
    with pytest.raises(SystemExit):
        main(["view", str(tmp_path / "x.jsonl")])
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as ex:
        main(["view", "--serve", str(tmp_path / "x.jsonl")])
    assert ex.value.code == 2
    assert capsys.readouterr().err == (
        "error: --serve takes one log folder (e.g. gauge view --serve logs/)\n"
    )


def test_serve_on_a_port_in_use_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as ex:
            main(["view", "--serve", str(tmp_path), "--port", str(port)])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}: ") and err.endswith(
        "pass another --port (0: any free one)\n"
    )


def test_to_pandas_needs_pandas_or_works(tmp_path: Path) -> None:
    from gauge.errors import GaugeError
    from gauge.evaluation.rows import EvalLog

    log = EvalLog(tmp_path, {}, None, [{"id": 1, "score": 1.0}])
    try:
        import pandas  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(GaugeError, match="pip install pandas"):
            log.to_pandas()
    else:
        assert list(log.to_pandas()["id"]) == [1]
