from pathlib import Path

import pytest

from gauge import Task, task
from gauge.evaluation.task import TaskError, load_task, parse_task_args, parse_value

TASK_FILE = """
from gauge import Task, task
from gauge.scorer import match

@task
def first(n: int = 2, word: str = "hi") -> Task:
    rows = [{"input": word, "target": word}] + [{"input": str(i)} for i in range(n)]
    return Task(rows, scorer=match())

@task(name="second")
def make_second() -> Task:
    return Task([{"input": "a"}], name="explicit")
"""


def test_parse_values() -> None:
    assert parse_task_args(["n=3", "f=0.5", "b=true", "s=hello", "l=[1, 2]", "e="]) == {
        "n": 3,
        "f": 0.5,
        "b": True,
        "s": "hello",
        "l": [1, 2],
        "e": "",
    }
    assert parse_value("ANSWER: B") == "ANSWER: B"
    assert parse_value("a, b") == "a, b"
    with pytest.raises(TaskError, match="must be name=value"):
        parse_task_args(["novalue"])


def test_load_task_by_name_with_args(tmp_path: Path) -> None:
    path = tmp_path / "tasks.py"
    path.write_text(TASK_FILE)
    built = load_task(f"{path}@first", {"n": 3, "word": "yo"})
    assert built.name == "first" and len(built.dataset) == 4
    assert built.spec == f"{path}@first" and built.args == {"n": 3, "word": "yo"}
    assert load_task(f"{path}@second").name == "explicit"


def test_load_task_errors(tmp_path: Path) -> None:
    path = tmp_path / "tasks.py"
    path.write_text(TASK_FILE)
    with pytest.raises(TaskError, match="several tasks"):
        load_task(str(path))
    with pytest.raises(TaskError, match="has no task 'third'; tasks: first, second"):
        load_task(f"{path}@third")
    with pytest.raises(TaskError, match="has no argument bogus; its arguments: n, word"):
        load_task(f"{path}@first", {"bogus": 1})
    with pytest.raises(TaskError, match="not found"):
        load_task(str(tmp_path / "missing.py"))
    with pytest.raises(TaskError, match="must be a Python file"):
        load_task("tasks.txt")
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    with pytest.raises(TaskError, match="failed to import: ModuleNotFoundError"):
        load_task(str(tmp_path / "broken.py"))
    (tmp_path / "none.py").write_text("x = 1\n")
    with pytest.raises(TaskError, match="defines no @task"):
        load_task(str(tmp_path / "none.py"))


def test_task_checks() -> None:
    with pytest.raises(TaskError, match="epochs must be >= 1"):
        Task([{"input": "a"}], epochs=0)
    with pytest.raises(TaskError, match="is not a Scorer"):
        Task([{"input": "a"}], scorer=[lambda s, t: None])  # type: ignore[list-item]

    @task
    def not_a_task() -> Task:
        return "nope"  # type: ignore[return-value]

    with pytest.raises(TaskError, match="returned str, not a Task"):
        not_a_task()
