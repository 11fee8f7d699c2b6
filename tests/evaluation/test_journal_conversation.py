"""Sample lines keep the whole conversation when the solver changed it (for transcripts)."""

from __future__ import annotations

from pathlib import Path

from gauge import Task, eval_async
from gauge.dataset import Sample
from gauge.evaluation.journal import read_journal
from gauge.scorer import match
from gauge.solver import generate, prompt_template, system_message
from gauge.view.data import sample_detail


async def run(tmp_path: Path, solver: list[object] | None) -> list[dict[str, object]]:
    task = Task([Sample(input="7", target="7", id="a")], solver=solver, scorer=match(), name="t")
    [result] = await eval_async(task, "mock/echo", log_dir=tmp_path, display=False)
    return list(read_journal(result.journal).samples.values())


async def test_a_changed_conversation_is_journalled_and_shown(tmp_path: Path) -> None:
    solver = [system_message("Answer briefly."), prompt_template("Q: {prompt}"), generate()]
    [line] = await run(tmp_path, solver)
    assert line["input"] == [{"role": "user", "content": "7"}]
    messages = line["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", "Answer briefly."),
        ("user", "Q: 7"),
    ]
    # The viewer's transcript shows the conversation, not just the input.
    assert sample_detail(line)["messages"] == messages


async def test_a_plain_generate_adds_nothing_to_the_line(tmp_path: Path) -> None:
    [line] = await run(tmp_path, None)
    assert "messages" not in line
    assert sample_detail(line)["messages"] == line["input"]
