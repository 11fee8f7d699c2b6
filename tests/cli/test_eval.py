"""`gauge eval` end to end, in process, on the mock provider."""

from pathlib import Path
from typing import Any

import click
import orjson
import pytest

from gauge.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def echo(n: int = 6, word: str = "w") -> Task:
    return Task([Sample(input=f"{word}{i}", target=f"{word}{i}", id=i) for i in range(n)],
                scorer=match())
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as ex:
        code = int(ex.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def journals(log_dir: Path) -> list[list[dict[str, Any]]]:
    return [
        [orjson.loads(x) for x in p.read_bytes().splitlines()]
        for p in sorted(log_dir.glob("*.jsonl"))
    ]


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "echo_task.py"
    path.write_text(TASK)
    return path


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "eval", "--help")
    assert code == 0
    for flag in (
        "--model-base-url",
        "-M",
        "--model-config",
        "--max-connections",
        "--max-retries",
        "--timeout",
        "--cache",
        "--limit",
        "--epochs",
        "--log-dir",
        "--resume",
        "--max-errors",
        "--temperature",
        "--stop-seqs",
        "--logprobs / --no-logprobs",
        "--reasoning-effort",
        "--extra-headers",
        "--response-schema",
    ):
        assert flag in out, flag


def test_runs_task_file_with_args_and_prints_table(
    capsys: pytest.CaptureFixture[str], task_file: Path, tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        "eval",
        f"{task_file}@echo",
        "-T",
        "n=5",
        "-T",
        "word=z",
        "--model",
        "mock/m",
        "--log-dir",
        str(tmp_path / "logs"),
        "--temperature",
        "0.3",
        "--stop-seqs",
        "STOP",
        "--logprobs",
        "--epochs",
        "2",
    )
    assert (code, err) == (0, "")
    assert "match/accuracy" in out and "1.000 ± 0.000" in out and "10/10 (0 err)" in out
    [records] = journals(tmp_path / "logs")
    header = records[0]
    assert header["task"]["args"] == {"n": 5, "word": "z"}
    assert header["config"] == {"temperature": 0.3, "stop_seqs": ["STOP"], "logprobs": True}
    samples = [r for r in records if r["type"] == "sample"]
    assert sorted((r["id"], r["epoch"]) for r in samples) == [
        (i, e) for i in range(5) for e in (1, 2)
    ]
    assert samples[0]["input"][0]["content"].startswith("z")


def test_env_twins_and_dotenv(
    capsys: pytest.CaptureFixture[str],
    task_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GAUGE_MODEL=mock/from-dotenv\nGAUGE_LIMIT=3\n")
    monkeypatch.setenv("GAUGE_LOG_DIR", str(tmp_path / "envlogs"))
    monkeypatch.setenv("GAUGE_TEMPERATURE", "0.7")
    code, _, err = run(capsys, "eval", str(task_file))
    assert code == 0, err
    [records] = journals(tmp_path / "envlogs")
    assert records[0]["model"]["name"] == "mock/from-dotenv"
    assert records[0]["config"] == {"temperature": 0.7}
    assert len([r for r in records if r["type"] == "sample"]) == 3


def test_model_args_and_model_config_file(
    capsys: pytest.CaptureFixture[str], task_file: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "model.yaml"
    cfg.write_text("model: mock/filed\nmax_tokens: 1\nlatency: 0.0\n")
    code, _, err = run(
        capsys,
        "eval",
        str(task_file),
        "--model-config",
        str(cfg),
        "-M",
        "seed=5",
        "--log-dir",
        str(tmp_path / "logs"),
    )
    assert code == 0, err
    [records] = journals(tmp_path / "logs")
    assert records[0]["model"]["name"] == "mock/filed"
    assert records[0]["model_args"] == {"latency": 0.0, "seed": 5}
    # The file's settings are the model's layer (a task's config or a flag overrides them).
    assert records[0]["config_layers"] == {"model": {"max_tokens": 1}, "task": {}, "run": {}}
    assert records[0]["config"] == {}
    assert records[0]["resolved_config"] == {"max_tokens": 1}
    assert records[0]["model"]["max_tokens"] == 1


def test_comma_list_of_models_prints_one_side_by_side_table(
    capsys: pytest.CaptureFixture[str], task_file: Path, tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        "eval",
        str(task_file),
        "--model",
        "mock/a,mock/b",
        "-M",
        "outputs=[w0,w1,w2,w3,w4,w5]",
        "--log-dir",
        str(tmp_path / "logs"),
    )
    assert code == 0, err
    header = next(line for line in out.splitlines() if "mock/a" in line)
    assert "mock/b" in header  # both models are columns of one table
    assert len(journals(tmp_path / "logs")) == 2


def test_sample_errors_beyond_max_errors(
    capsys: pytest.CaptureFixture[str], task_file: Path, tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        "eval",
        str(task_file),
        "--model",
        "mock/bad",
        "-M",
        "error_rate=1",
        "-M",
        "error=fatal",
        "--max-errors",
        "2",
        "--log-dir",
        str(tmp_path / "logs"),
    )
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(
        "error: 3 sample error(s), more than --max-errors 2"
    )
    assert "gauge eval --resume" in err and "Traceback" not in err
    assert "(3 err)" in out  # the stopped run still gets its results table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "missing.py", "-m", "mock/x"], "error: task file missing.py not found"),
        (["eval", "{task}@nope", "-m", "mock/x"], "has no task 'nope'; tasks: echo"),
        (["eval", "{task}", "-T", "bad", "-m", "mock/x"], "-T 'bad' must be name=value"),
        (["eval", "{task}", "-T", "zzz=1", "-m", "mock/x"], "task echo has no argument zzz"),
        (
            ["eval", "{task}", "--temperature", "9", "-m", "mock/x"],
            "temperature: Input should be less",
        ),
        (["eval", "{task}", "--reasoning-effort", "max", "-m", "mock/x"], "'max' is not one of"),
        (["eval", "{task}", "--limit", "zero", "-m", "mock/x"], "Invalid value for '--limit'"),
        (["eval", "{task}", "--nope", "-m", "mock/x"], "No such option '--nope'"),
        (["eval", "{task}", "-m", "nomodel"], "must be provider/name"),
        (["eval", "{task}", "-m", "mock/x", "--cache", "3 fortnights"], "cache expiry"),
        (["eval", "{task}", "-m", "mock/x", "--epochs-reducer", "median"], "unknown epoch reducer"),
        (["eval", "-m", "mock/x"], "give a TASK"),
        (["eval", "--resume", "missing.jsonl"], "journal missing.jsonl not found"),
        (["eval", "{bad_data}", "-m", "mock/x"], "bad.jsonl:2: not valid JSON"),
    ],
)
def test_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    task_file: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    bad_data = tmp_path / "bad_task.py"
    (tmp_path / "bad.jsonl").write_text('{"input": "a"}\n{"input": \n')
    bad_data.write_text(
        "from pathlib import Path\nfrom gauge import Task, task\n"
        "from gauge.dataset import json_dataset\n"
        "@task\ndef bad():\n    return Task(json_dataset(Path(__file__).parent / 'bad.jsonl'))\n"
    )
    args = [a.format(task=task_file, bad_data=bad_data) for a in args]
    code, _, err = run(capsys, *args, "--log-dir", str(tmp_path / "logs"))
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err


def test_examples_run_offline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logs = str(tmp_path / "logs")
    code, out, err = run(
        capsys,
        "eval",
        str(EXAMPLES / "arithmetic.py"),
        "-T",
        "limit=30",
        "-m",
        "mock/echo",
        "--log-dir",
        logs,
    )
    assert code == 0, err
    assert "arithmetic" in out and "30/30" in out
    code, out, err = run(
        capsys,
        "eval",
        str(EXAMPLES / "multiple_choice.py"),
        "-m",
        "mock/mc",
        "-M",
        "outputs=ANSWER: B",
        "--log-dir",
        logs,
        "--limit",
        "1",
    )
    assert code == 0, err
    assert "choice/accuracy" in out and "1.000" in out  # sample 1's answer is B
    code, out, err = run(
        capsys,
        "eval",
        str(EXAMPLES / "model_graded.py"),
        "-m",
        "mock/ans",
        "-T",
        "grader=mock/grader",
        "--log-dir",
        logs,
        "--limit",
        "2",
    )
    assert code == 0, err
    assert "model_graded_fact/accuracy" in out


def test_cache_flag_reuses_responses_per_epoch(
    capsys: pytest.CaptureFixture[str],
    task_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GAUGE_CACHE_DIR", str(tmp_path / "cache"))
    args = ["eval", str(task_file), "-m", "mock/c", "--cache", "--epochs", "2", "--no-display"]
    assert run(capsys, *args, "--log-dir", str(tmp_path / "one"))[0] == 0
    assert run(capsys, *args, "--log-dir", str(tmp_path / "two"))[0] == 0
    [first] = journals(tmp_path / "one")
    [second] = journals(tmp_path / "two")
    assert {r["cache"] for r in first if r["type"] == "sample"} == {"miss"}
    assert {r["cache"] for r in second if r["type"] == "sample"} == {"hit"}
    assert len([r for r in second if r["type"] == "sample"]) == 12  # 6 samples x 2 epochs


def test_quick_run_prints_no_progress(
    capsys: pytest.CaptureFixture[str], task_file: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "eval", str(task_file), "-m", "mock/q", "--log-dir", str(tmp_path))
    assert code == 0 and err == ""
    assert "in flight" not in out


def test_resume_with_another_model_is_refused(
    capsys: pytest.CaptureFixture[str], task_file: Path, tmp_path: Path
) -> None:
    assert run(capsys, "eval", str(task_file), "-m", "mock/a", "--log-dir", str(tmp_path))[0] == 0
    [journal] = tmp_path.glob("*.jsonl")
    code, _, err = run(capsys, "eval", "--resume", str(journal), "-m", "mock/b")
    assert code == 2 and "was run on mock/a; resume it with that model" in err
    code, out, err = run(capsys, "eval", "--resume", str(journal))
    assert code == 0, err
    assert "6/6 (0 err)" in out  # nothing left to run; the table covers the whole journal


def test_every_generate_config_field_has_a_flag_and_env_twin() -> None:
    from gauge.cli.eval import eval_command
    from gauge.model.config import GenerateConfig

    flags = {opt for p in eval_command.params for opt in p.opts}
    envvars = {p.envvar for p in eval_command.params if getattr(p, "envvar", None)}
    for name in GenerateConfig.model_fields:
        assert "--" + name.replace("_", "-") in flags, name
        assert "GAUGE_" + name.upper() in envvars, name
    for param in eval_command.params:
        if isinstance(param, click.Option):
            assert param.envvar and param.envvar.startswith("GAUGE_"), param.name


CONFIGURED_TASK = """
from gauge import GenerateConfig, Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def echo(n: int = 6, connections: int = 0) -> Task:
    # Only a given value is set (an explicit None would clear the model's layer).
    config = GenerateConfig(max_connections=connections) if connections else GenerateConfig()
    return Task([Sample(input=f"w{i}", target=f"w{i}", id=i) for i in range(n)],
                scorer=match(), config=config)
"""


def header_and_summary(log_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    [records] = journals(log_dir)
    return records[0], records[-1]


@pytest.mark.parametrize(
    ("args", "connections", "in_flight", "retries"),
    [
        # -M max_connections is the mock's default (its adaptive start): the flag fixes it.
        (["-M", "max_connections=5", "--max-connections", "3"], 3, 3, None),
        (["-M", "max_connections=5"], None, 256, None),  # adaptive: from 5 up to 256
        (["-M", "num_concurrent=5"], 5, 5, None),  # lm-eval's alias: the model's layer
        (["-T", "connections=2", "-M", "num_concurrent=5"], 2, 2, None),  # task > model
        (["-T", "connections=2", "--max-connections", "3"], 3, 3, None),  # flag > task
        (["--model-config", "{file}", "-T", "connections=2"], 2, 2, 4),  # task > file
        (["--model-config", "{file}"], 7, 7, 4),
        (["--model-config", "{file}", "--max-connections", "4"], 4, 4, 4),  # flag > file
        (["--model-config", "{file}", "--max-retries", "0"], 7, 7, 0),
    ],
)
def test_max_connections_resolves_by_one_precedence(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    connections: int | None,
    in_flight: int,
    retries: int | None,
) -> None:
    (tmp_path / "configured.py").write_text(CONFIGURED_TASK)
    (tmp_path / "model.yaml").write_text("max_connections: 7\nmax_retries: 4\n")
    args = [a.format(file=tmp_path / "model.yaml") for a in args]
    logs = tmp_path / "logs"
    code, _, err = run(
        capsys,
        "eval",
        str(tmp_path / "configured.py"),
        "-m",
        "mock/p",
        *args,
        "--log-dir",
        str(logs),
    )
    assert code == 0, err
    header, summary = header_and_summary(logs)
    # One value: the header's settings, the samples in flight and the key's limit agree.
    assert header["pipeline"]["max_connections"] == connections
    assert header["resolved_config"].get("max_connections") == connections
    assert header["pipeline"]["max_retries"] == retries
    assert header["eval"]["samples_in_flight"] == in_flight
    rate = summary["rate_control"]
    assert rate["adaptive"] is (connections is None)
    if connections is not None:
        assert rate["concurrency"] == connections


@pytest.mark.parametrize("alias", ["num_concurrent=5", "max_retries=2"])
def test_an_lm_eval_alias_and_a_different_flag_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], task_file: Path, tmp_path: Path, alias: str
) -> None:
    flag = ["--max-connections", "3"] if alias.startswith("num") else ["--max-retries", "1"]
    code, _, err = run(
        capsys,
        "eval",
        str(task_file),
        "-m",
        "mock/x",
        "-M",
        alias,
        *flag,
        "--log-dir",
        str(tmp_path),
    )
    assert code == 2 and err.count("\n") == 1
    assert f"-M {alias} conflicts with" in err and "give only one" in err
    assert not list(tmp_path.glob("*.jsonl"))
