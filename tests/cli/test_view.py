"""`gauge view` writes one self-contained HTML report with SVG plots."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gauge import Task
from gauge.cli.main import main
from gauge.dataset import Sample
from gauge.evaluation.runner import eval_async
from gauge.log import read_log
from gauge.scorer import match


async def make_logs(tmp_path: Path) -> list[str]:
    samples = [
        Sample(input=f"<b>{i}</b>", target=f"<b>{i}</b>" if i % 2 else "x", id=i) for i in range(10)
    ]
    task = Task(samples, scorer=match(), name="html")
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


async def test_report_has_tables_plots_and_no_external_resources(tmp_path: Path) -> None:
    journals = await make_logs(tmp_path)
    # read_log gives rows (used by the report too)
    log = read_log(journals[2])
    assert len(log.rows) == 10 and sum(1 for r in log.rows if r["error"]) == 2
    row = next(r for r in log.rows if r["id"] == 7)  # ids 0 and 1 took the two errors
    assert row["score_match"] == "C" and row["score_match_num"] == 1.0
    assert row["input"] == "<b>7</b>" and row["completion"] == "<b>7</b>"
    assert log.task == "html" and log.model == "mock/bad"
    try:
        main(["view", str(tmp_path / "logs"), "-o", str(tmp_path / "report.html")])
    except SystemExit as ex:  # pragma: no cover - a failure shows the code
        raise AssertionError(ex.code) from None
    html = (tmp_path / "report.html").read_text()
    assert "mock/a" in html and "mock/b" in html and "mock/bad" in html
    assert "MockFatalError" in html
    assert not re.search(r"(src|href)=['\"]?https?://", html)  # opens offline
    assert "<script" not in html
    assert "&lt;b&gt;1&lt;/b&gt;" in html and "<b>1</b>" not in html  # sample text escaped
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 4
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    titles = [ET.fromstring(s).find("{http://www.w3.org/2000/svg}text").text for s in svgs]
    assert titles[0].startswith("score (match/accuracy)")
    assert titles[1:] == ["latency per sample (s)", "tokens per model", "sample errors"]
    # score bars: a and b are 0.5 correct, bad scores 4 of its 8 answered samples
    assert ">0.500<" in svgs[0]


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
