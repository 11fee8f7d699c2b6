"""The viewer in a real headless Chromium: it loads clean, filters narrow, transcripts open.

Screenshots at 1400x1000 for 2 and 20 runs go to the test's tmp_path and are copied
to tests/output/ (ignored by git) for a person to look at.
"""

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gauge import Task
from gauge.cli.main import main
from gauge.dataset import Sample
from gauge.evaluation.runner import eval_async
from gauge.scorer import match
from gauge.testing.browser import Browser, chromium_path
from gauge.testing.journals import write_run, write_runs
from gauge.view.server import start

OUTPUT = Path(__file__).resolve().parents[1] / "output"
COUNT = (
    "document.querySelector('#{tab} .count') && document.querySelector('#{tab} .count').textContent"
)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    if chromium_path() is None:
        pytest.fail(
            "chromium is not installed: apt-get install -y chromium (a real headless browser)"
        )
    (tmp_path / "profile").mkdir()
    async with await Browser.launch(tmp_path / "profile", 1400, 1000) as chromium:
        yield chromium


async def shoot(browser: Browser, tmp_path: Path, name: str) -> None:
    path = await browser.screenshot(tmp_path / name)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / name)


def write_view(logs: Path, out: Path) -> str:
    try:
        main(["view", str(logs), "-o", str(out)])
    except SystemExit as ex:  # pragma: no cover - a failure shows the code
        raise AssertionError(ex.code) from None
    return out.as_uri()


async def pick(browser: Browser, field: str, value: str, tab: str = "samples") -> None:
    """Set a filter the way a person does: change the control, let the page react."""
    event = "input" if field in ("q", "meta") else "change"
    attr = "data-c" if tab == "compare" else "data-f"
    await browser.eval(
        f"(() => {{ const el = document.querySelector('#{tab} [{attr}={field}]');"
        f" el.value = {json.dumps(value)};"
        f" el.dispatchEvent(new Event('{event}', {{bubbles: true}})); }})()"
    )


async def count_is(browser: Browser, text: str, tab: str = "samples") -> None:
    await browser.wait_for(f"({COUNT.format(tab=tab)}) === {json.dumps(text)}", 10)


async def test_two_runs_filter_search_and_transcripts(browser: Browser, tmp_path: Path) -> None:
    data = [
        Sample(input=f"<b>{i}</b>", target=f"<b>{i}</b>" if i % 2 else "x", id=i,
               metadata={"parity": "odd" if i % 2 else "even"})
        for i in range(40)
    ]  # fmt: skip
    task = Task(data, scorer=match(), name="html")
    await eval_async(task, "mock/a", log_dir=tmp_path / "logs", display=False)
    await eval_async(task, "mock/bad", model_args={"errors": ["fatal", "fatal"]}, max_errors=5,
                     log_dir=tmp_path / "logs", display=False)  # fmt: skip
    await browser.goto(write_view(tmp_path / "logs", tmp_path / "view.html"))
    await browser.wait_for("document.body.dataset.ready === '1'")
    assert await browser.eval("document.querySelectorAll('svg.chart').length") == 5
    await shoot(browser, tmp_path, "view-2-runs.png")

    await browser.eval("document.querySelector('nav button[data-tab=samples]').click()")
    await count_is(browser, "80 of 80 samples")
    assert await browser.eval("document.querySelectorAll('#stable .vr').length") < 80  # in view
    await pick(browser, "status", "error")
    await count_is(browser, "2 of 80 samples")
    assert await browser.eval("document.querySelectorAll('#stable .vr').length") == 2
    await pick(browser, "status", "wrong")
    await count_is(browser, "39 of 80 samples")  # a: 20 wrong; bad: 19 of its 38 answered
    await pick(browser, "status", "all")
    await pick(browser, "meta", "parity=odd")
    await count_is(browser, "40 of 80 samples")
    await pick(browser, "q", "<b>7</b>")
    await count_is(browser, "2 of 80 samples")
    await pick(browser, "score", "I")
    await count_is(browser, "0 of 80 samples")
    await pick(browser, "score", "C")
    await count_is(browser, "2 of 80 samples")
    await pick(browser, "run", "1")
    await count_is(browser, "1 of 40 samples")

    await browser.eval("document.querySelector('#stable .vr').click()")
    await browser.wait_for("!document.getElementById('drawer').hidden")
    drawer = "document.getElementById('drawer').innerText"
    text = await browser.wait_for(f"{drawer}.includes('sample 7') && {drawer}")
    assert "<b>7</b>" in text and "match: C" in text and "html · mock/bad" in text
    await browser.eval("document.querySelector('#drawer [data-act=side]').click()")
    await browser.wait_for("document.querySelectorAll('#drawer .cols > div').length === 2")
    text = await browser.eval(drawer)
    assert "html · mock/a" in text and "html · mock/bad" in text
    await shoot(browser, tmp_path, "view-2-runs-transcript.png")

    # An errored sample's transcript says the message and the attempts, not just the type.
    await browser.eval("document.querySelector('#drawer [data-act=close]').click()")
    for field, value in (("q", ""), ("meta", ""), ("score", ""), ("status", "error")):
        await pick(browser, field, value)
    await count_is(browser, "2 of 40 samples")
    await browser.eval("document.querySelector('#stable .vr').click()")
    text = await browser.wait_for(f"{drawer}.includes('mock fatal error') && {drawer}")
    assert "MockFatalError: mock fatal error (injected)" in text and "fatal" in text
    assert "#tab=samples" in await browser.eval("location.hash")
    assert browser.errors == []


async def test_twenty_runs_charts_and_compare(browser: Browser, tmp_path: Path) -> None:
    models = [f"provider-{i % 5}/model-{i}-{'long-variant-' * (i % 3)}instruct" for i in range(20)]
    write_runs(tmp_path / "logs", models, 200)
    await browser.goto(write_view(tmp_path / "logs", tmp_path / "view.html"))
    await browser.wait_for("document.body.dataset.ready === '1'")
    await shoot(browser, tmp_path, "view-20-runs.png")
    await browser.eval("document.querySelector('.charts').scrollIntoView()")
    await shoot(browser, tmp_path, "view-20-runs-charts.png")
    rows = await browser.eval("document.querySelectorAll('svg.chart')[0].getBBox().height")
    assert rows >= 20 * 22

    await browser.eval("document.querySelector('nav button[data-tab=samples]').click()")
    await count_is(browser, "4,000 of 4,000 samples")
    drawn = await browser.eval("document.querySelectorAll('#stable .vr').length")
    assert 10 < drawn < 80  # only the rows in view are in the page
    latencies = "[...document.querySelectorAll('#stable .vr')].map(r => r.children[9].textContent)"
    unsorted = [float(x) for x in await browser.eval(latencies) if x]
    assert unsorted != sorted(unsorted)
    for arrow, descending in (("▲", False), ("▼", True)):
        await browser.eval("document.querySelector('#samples .vt-head [data-key=lat]').click()")
        await browser.wait_for(
            f"document.querySelector('#samples .vt-head [data-key=lat]').textContent"
            f" === 'latency {arrow}'"
        )
        shown = [float(x) for x in await browser.eval(latencies) if x]
        assert len(shown) > 10 and shown == sorted(shown, reverse=descending)

    await browser.eval("document.querySelector('nav button[data-tab=compare]').click()")
    text = await browser.wait_for(COUNT.format(tab="compare"))
    disagree = int(text.split(" disagreements")[0].replace(",", ""))
    assert 0 < disagree < 200 and text.endswith(f"showing {disagree}")
    await pick(browser, "b", "5", tab="compare")
    await browser.wait_for(f"({COUNT.format(tab='compare')}) !== {json.dumps(text)}")
    await browser.eval("document.querySelector('#ctable .vr').click()")
    await browser.wait_for("document.querySelectorAll('#drawer .cols > div').length === 2")
    scores = await browser.eval(
        "[...document.querySelectorAll('#drawer .badge')].map(b => b.textContent)"
    )
    assert len(scores) == 2 and scores[0] != scores[1]  # where they disagree
    await shoot(browser, tmp_path, "view-20-runs-compare.png")
    assert browser.errors == []


async def test_served_page_refreshes_as_runs_write(browser: Browser, tmp_path: Path) -> None:
    write_run(tmp_path, "m/first", 30)
    runner, url = await start(tmp_path, 0)
    try:
        await browser.goto(url + "#tab=samples")
        await count_is(browser, "30 of 30 samples")
        write_run(tmp_path, "m/second", 12)  # a run finishes while the page is open
        await count_is(browser, "42 of 42 samples")  # reloaded, still on the samples tab
        assert "2 run(s)" in await browser.eval("document.querySelector('header').innerText")
        # Reading a transcript: a new run offers a reload rather than pulling the page away.
        await browser.eval("document.querySelector('#stable .vr').click()")
        await browser.wait_for("!document.getElementById('drawer').hidden")
        opened = await browser.eval("document.querySelector('#drawer h4').textContent")
        assert opened == "arith · m/first"
        write_run(tmp_path, "m/a-new", 8)  # sorts first: every other run moves down one
        await browser.wait_for("!!document.getElementById('reload')", 10)
        assert await browser.eval(COUNT.format(tab="samples")) == "42 of 42 samples"
        await browser.eval("document.getElementById('reload').click()")
        await count_is(browser, "50 of 50 samples")
        await browser.wait_for(  # the same sample of the same run is open again
            "!document.getElementById('drawer').hidden && "
            "document.querySelector('#drawer h4').textContent === 'arith · m/first'"
        )
    finally:
        await runner.cleanup()
    assert browser.errors == []


async def test_the_browser_reports_console_errors_and_exceptions(browser: Browser) -> None:
    # So `browser.errors == []` above means something: a broken page is caught.
    await browser.goto(
        "data:text/html,<script>console.error('boom');</script>"
        "<script>throw new Error('bang')</script>"
    )
    await browser.wait_for("true")
    assert any("boom" in e for e in browser.errors), browser.errors
    assert any("bang" in e for e in browser.errors), browser.errors


async def test_a_transcript_shows_every_message_kind(browser: Browser, tmp_path: Path) -> None:
    pixel = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9Q"
        "DwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    usage = {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150,
             "input_tokens_cache_read": 100, "cost": 0.0012}  # fmt: skip
    lines = [
        {"type": "header", "task": {"name": "tools", "scorers": ["judge"]},
         "model": {"name": "m/agent"}},
        {"type": "sample", "id": "s-1", "epoch": 2, "model": "m/agent", "target": "5",
         "input": [
             {"role": "system", "content": "Use the add tool."},
             {"role": "user", "content": [{"type": "text", "text": "What is 2 + 3? <i>x</i>"},
                                          {"type": "image", "image": pixel}]},
             {"role": "assistant", "content": "",
              "tool_calls": [{"id": "call_1", "function": "add", "arguments": {"a": 2, "b": 3}}]},
             {"role": "tool", "content": "5", "tool_call_id": "call_1", "function": "add"},
         ],
         "output": {"completion": "It is 5.", "model_output": {"model": "m/agent", "time": 0.25,
             "choices": [{"message": {"role": "assistant", "content": [
                 {"type": "reasoning", "reasoning": "2 plus 3 makes 5"},
                 {"type": "text", "text": "It is 5."}]}, "stop_reason": "stop"}]}},
         "scores": {"judge": {"value": 1.0, "answer": "5",
                              "explanation": "the tool result was used"}},
         "usage": usage, "time": 1.75, "retries": 2, "cache": "miss", "error": None,
         "metadata": {"suite": "tools"}, "store": {"calls": 1}},
    ]  # fmt: skip
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    page = write_view(tmp_path / "logs", tmp_path / "view.html")
    await browser.goto(page + "#tab=samples&open=run.jsonl:0")  # the hash opens a sample too
    drawer = "document.getElementById('drawer').innerText"
    text = await browser.wait_for(f"{drawer}.includes('tool result') && {drawer}")
    for expected in (
        "sample s-1 · epoch 2", "judge: 1", "SYSTEM", "Use the add tool.",
        "What is 2 + 3? <i>x</i>", 'add({\n  "a": 2,\n  "b": 3\n})', "TOOL ADD CALL_1",
        "reasoning", "It is 5.", "the tool result was used", "$0.0012", "cache read tokens\t100",
        "model call latency (s)\t0.250", "sample time (s)\t1.75", "retries\t2", "miss",
        '"suite": "tools"', '"calls": 1',
    ):  # fmt: skip
        assert expected in text, (expected, text)
    assert await browser.eval("document.querySelectorAll('#drawer img').length") == 1
    assert await browser.eval("document.querySelectorAll('#drawer i').length") == 0  # escaped
    assert browser.errors == []
