"""Pre-flight: an eval mistake is one line, exit code 2, before any journal or sample, in < 1 s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gauge import Task, eval
from gauge.cli.main import main
from gauge.dataset import Sample
from gauge.errors import ConfigError
from gauge.model.lm_eval_args import known_model_args
from gauge.model.registry import BUILTINS, provider_class
from gauge.scorer import match

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def echo(n: int = 4, word: str = "w", mode: str | None = None) -> Task:
    return Task([Sample(input=f"{word}{i}", target=f"{word}{i}", id=i) for i in range(n)],
                scorer=match())
"""

INSPECT_TASK = """
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import match

@task
def hello():
    return Task(dataset=[Sample(input="hi", target="hi")], scorer=match())
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, float]:
    """(exit code, last line of stderr, seconds) of `gauge ARGS` in process."""
    started = time.perf_counter()
    try:
        main(list(args))
        code = 0
    except SystemExit as ex:
        code = int(ex.code or 0)
    seconds = time.perf_counter() - started
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    return code, lines[-1] if lines else "", seconds


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "echo.py").write_text(TASK)
    (tmp_path / "inspect_task.py").write_text(INSPECT_TASK)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "loose.yaml").write_text("model: mock/x\ncolour: red\n")
    (tmp_path / "typo.yaml").write_text("model: mock/x\ntemprature: 0\n")
    monkeypatch.chdir(tmp_path)
    for name in ("GAUGE_MODEL", "GAUGE_CACHE_DIR", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


MISTAKES: list[tuple[list[str], str]] = [
    (
        ["-m", "mock/x", "-M", "colour=red"],
        "error: provider 'mock' does not take model args colour; known: error, error_rate, "
        "errors, latency, logprob_per_char, max_connections, outputs, retry_after, "
        "score_batch_size, seed",
    ),
    (["-m", "mock/x", "-M", "temperature=0"], "temperature is a generation setting"),
    (
        ["-m", "openai/gpt-4o-mini", "-M", "api_key=sk-x", "-M", "max_tokens=5"],
        "error: -M max_tokens is a generation setting, not a model arg of provider 'openai'; "
        "give it as --max-tokens (config: in --model-config, GenerateConfig in Python)",
    ),
    (
        ["-m", "openai/gpt-4o-mini", "-M", "api_key=sk-x", "--top-k", "5"],
        "error: provider 'openai' does not support top_k; remove it, or set "
        "drop_unsupported=True to send the request without it",
    ),
    (["-m", "mock/x", "-T", "n=abc"], "error: -T n=abc: n must be an integer (task echo)"),
    (["-m", "mock/x", "-T", "n=[1]"], "error: -T n=[1]: n must be an integer (task echo)"),
    (
        ["-m", "mock/x", "--epochs-reducer", "at_least_5"],
        "error: epoch reducer at_least_5 needs at least 5 epochs, but task echo runs 1; "
        "add --epochs 5, or use mean, mode or max",
    ),
    (["-m", ""], "error: --model is empty; give provider/name"),
    (["-m", " , "], "error: --model is empty; give provider/name"),
    (
        ["--model-config", "loose.yaml"],
        "error: --model-config loose.yaml: unknown key 'colour'; use model, base_url, "
        "config: {generation settings} and args: {model args}",
    ),
    (["--model-config", "typo.yaml"], "unknown key 'temprature' (did you mean temperature?)"),
    (
        ["-m", "mock/x", "--log-dir", "a_file"],
        "error: --log-dir a_file is a file; give a folder for the journals (default: logs)",
    ),
    (["-m", "mock/x", "--log-dir", "a_file/logs"], "is inside a_file, which is a file"),
    (["-m", "hf/no-org/no-model"], "hf model 'no-org/no-model' is not on this machine"),
]


@pytest.mark.parametrize(("args", "error"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_mistake_is_one_line_exit_2_nothing_written_under_a_second(
    capsys: pytest.CaptureFixture[str], workdir: Path, args: list[str], error: str
) -> None:
    run(capsys, "eval", "echo.py", "-m", "mock/warm", "-M", "colour=1")  # imports: not timed
    code, line, seconds = run(capsys, "eval", "echo.py", *args, "--no-display")
    assert code == 2, line
    assert line.startswith("error: ") and error in line, line
    assert not (workdir / "logs").exists()  # no journal, not even its folder
    assert seconds < 1.0, seconds


def test_an_inspect_ai_task_is_refused_without_running_it(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, line, _ = run(capsys, "eval", "inspect_task.py", "-m", "mock/x")
    assert code == 2
    assert line.startswith("error: inspect_task.py is an Inspect AI task (it imports inspect_ai)")
    assert "`from gauge import Task, task`" in line


def test_a_cache_dir_that_is_a_file_fails_before_the_run(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", "a_file")
    code, line, _ = run(capsys, "eval", "echo.py", "-m", "mock/x", "--cache", "--no-display")
    assert (code, line) == (
        2,
        "error: GAUGE_CACHE_DIR=a_file is a file; point GAUGE_CACHE_DIR at a folder "
        "(gauge keeps responses.sqlite3 in it)",
    )
    assert not (workdir / "logs").exists()
    # Without --cache the cache is not used, so it is no mistake.
    code, line, _ = run(capsys, "eval", "echo.py", "-m", "mock/x", "--no-display")
    assert code == 0, line


def test_task_arguments_are_checked_against_their_annotations(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    for good in ("n=2", "word=3", "mode=x", "mode=null"):
        code, line, _ = run(capsys, "eval", "echo.py", "-m", "mock/x", "-T", good, "--no-display")
        assert code == 0, (good, line)


def test_open_providers_take_extra_names_but_not_generation_settings(workdir: Path) -> None:
    from gauge import get_model

    model = get_model("openai/gpt-4o-mini", api_key="k", base_url="http://127.0.0.1:9", min_p=0.05)
    assert model.api.model_args["min_p"] == 0.05  # sent in the request body
    with pytest.raises(ConfigError, match="-M seed is a generation setting"):
        get_model("openai/gpt-4o-mini", api_key="k", seed=1)
    # lm-eval's names stay accepted everywhere
    model = get_model("mock/lm", num_concurrent=3, max_retries=1, timeout=9, max_gen_toks=4)
    assert model.config.max_connections == 3 and model.config.max_tokens == 4


@pytest.mark.parametrize("provider", sorted(BUILTINS))
def test_every_builtin_provider_refuses_an_unknown_model_arg(provider: str) -> None:
    from gauge import get_model

    cls = provider_class(provider)
    passes_on = getattr(cls.route("http://127.0.0.1:9", {}), "model_args_go_to", None)
    name = "temperature" if passes_on else "colour"  # open providers refuse settings only
    with pytest.raises(ConfigError, match=name):
        get_model(
            f"{provider}/m",
            api_key="k",
            base_url="http://127.0.0.1:9",
            memoize=False,
            **{name: "0.5"},
        )


def test_declared_model_args_include_the_init_parameters() -> None:
    from gauge.model.providers.mock import MockAPI

    known = known_model_args(MockAPI)
    assert known is not None and {"latency", "outputs", "errors"} <= known


# -- eval() in Python: the same checks ---------------------------------------------------


def tiny(**kwargs: Any) -> Task:
    return Task([Sample(input="a", target="a")], scorer=match(), **kwargs)


def test_eval_in_python_checks_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not take model args colour"):
        eval(tiny(), "mock/x", model_args={"colour": 1}, log_dir=tmp_path, display=False)
    with pytest.raises(ConfigError, match="at_least_3 needs at least 3 epochs"):
        eval(tiny(epoch_reducer="at_least_3", epochs=2), "mock/x", log_dir=tmp_path, display=False)
    assert not list(tmp_path.glob("*.jsonl"))
    [result] = eval(tiny(), "mock/x", log_dir=tmp_path, display=False, temperature=0.5)
    assert result.status == "success"
    before = Path(result.journal).read_bytes()
    with pytest.raises(ConfigError, match=r"ran with temperature=0\.5; resuming with temperature"):
        eval(tiny(), "mock/x", resume=result.journal, temperature=0.7, display=False)
    assert Path(result.journal).read_bytes() == before
    [again] = eval(tiny(), "mock/x", resume=result.journal, temperature=0.5, display=False)
    assert again.status == "success"


# -- resume: settings that change results may not change ----------------------------------


def started(capsys: pytest.CaptureFixture[str], workdir: Path, *args: str) -> Path:
    code, line, _ = run(
        capsys, "eval", "echo.py", "-m", "mock/r", "--limit", "2", "--no-display", *args
    )
    assert code == 0, line
    [journal] = (workdir / "logs").glob("*.jsonl")
    return journal


@pytest.mark.parametrize(
    ("again", "error"),
    [
        (["--temperature", "0.5"], "ran with temperature=0.7; resuming with temperature=0.5"),
        (["--max-tokens", "5"], "ran with no max_tokens; resuming with max_tokens=5"),
        (["--seed", "1"], "ran with no seed; resuming with seed=1"),
        (["-T", "n=5"], "ran with no -T n; resuming with -T n=5"),
        (["-T", "word=v"], "ran with -T word=x; resuming with -T word=v"),
        (["-M", "seed=3"], "ran with no -M seed; resuming with -M seed=3"),
        (["-M", "max_gen_toks=3"], "resuming with -M max_gen_toks=3"),
        (["--epochs-reducer", "max"], "ran with epoch reducer mean; resuming with epoch reducer"),
        (["-m", "mock/other"], "was run on mock/r; resume it with that model"),
    ],
)
def test_a_result_changing_override_on_resume_is_refused(
    capsys: pytest.CaptureFixture[str], workdir: Path, again: list[str], error: str
) -> None:
    journal = started(capsys, workdir, "--temperature", "0.7", "-T", "word=x")
    before = journal.read_bytes()
    code, line, seconds = run(capsys, "eval", "--resume", str(journal), "--no-display", *again)
    assert code == 2 and error in line, line
    if "ran with" in error:
        assert "drop it, or start a new run without --resume" in line
    assert journal.read_bytes() == before  # nothing appended
    assert seconds < 1.0, seconds


def test_overrides_that_do_not_change_results_are_taken_on_resume(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    journal = started(capsys, workdir, "--temperature", "0.7", "-M", "latency=0")
    code, line, _ = run(
        capsys, "eval", "--resume", str(journal), "--limit", "4", "--no-display",
        "--temperature", "0.7",  # the same value again is no change
        "--max-connections", "3", "--max-retries", "1", "--timeout", "30",
        "--attempt-timeout", "20", "--rpm", "6000", "--max-samples", "2", "--max-errors", "1",
        "-M", "num_concurrent=3", "-M", "latency=0.001",
    )  # fmt: skip
    assert code == 0, line
    text = journal.read_text()
    assert '"type":"resume"' in text and '"max_connections":3' in text
