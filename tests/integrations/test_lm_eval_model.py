"""gauge as lm-evaluation-harness's model layer: the real lm_eval package, offline.

The `gauge` model answers generate_until, loglikelihood and loglikelihood_rolling
through gauge; lm-eval's own models stay registered beside it; and three small
tasks on the bundled model score the same as on lm-eval's own `hf` model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import lm_eval  # in the dev extra: a missing one fails, never skips
except ModuleNotFoundError:
    pytest.fail("these tests need lm_eval: pip install 'gauge[lm-eval]'", pytrace=False)

from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model as lm_eval_model
from lm_eval.tasks import TaskManager

import gauge.model
from gauge.errors import ConfigError, UnsupportedFeature
from gauge.integrations.lm_eval_model import GaugeLM, _generation

TINY = Path(gauge.model.__file__).parents[1] / "assets" / "gauge-tiny"
SUMS = [(7, 85), (0, 3), (41, 9), (66, 33), (12, 12), (99, 1)]


def request(kind: str, *args: Any) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)  # type: ignore[arg-type]


def test_gauge_is_registered_beside_lm_evals_own_models() -> None:
    assert lm_eval_model("gauge") is GaugeLM
    assert lm_eval_model("hf").__name__ == "HFLM"  # registering ours did not hide theirs


def test_generation_kwargs_map_to_gauge_config() -> None:
    messages, config = _generation(
        "Q: 2+2\nA:", {"until": "\n", "max_gen_toks": 5, "do_sample": False}, 256
    )
    assert [(m.role, m.text) for m in messages] == [("user", "Q: 2+2\nA:")]
    assert config.set_fields() == {"max_tokens": 5, "stop_seqs": ["\n"], "temperature": 0.0}
    _, sampled = _generation("x", {"do_sample": True, "temperature": 0.7, "seed": 1}, 9)
    assert sampled.set_fields() == {"max_tokens": 9, "temperature": 0.7, "seed": 1}
    with pytest.raises(ConfigError, match="generation_kwargs repetition_penalty cannot go"):
        _generation("x", {"repetition_penalty": 1.1}, 9)


def test_the_model_arg_is_required_and_batch_flags_are_taken() -> None:
    with pytest.raises(ConfigError, match="needs the gauge model: --model_args model=hf/gauge"):
        GaugeLM.create_from_arg_string("", {"batch_size": 1})
    placement = {"batch_size": 4, "max_batch_size": 8, "device": "cuda:0"}  # CLI defaults
    lm = GaugeLM.create_from_arg_string("model=mock/echo", placement)
    assert lm.model.name == "mock/echo" and lm.tokenizer_name == "gauge/mock/echo"


def test_requests_go_through_gauge() -> None:
    lm = GaugeLM(model="mock/lm", memoize=False)
    got = lm.generate_until(
        [
            request("generate_until", "one two STOP three", {"until": ["STOP"]}),
            request("generate_until", "plain", {"until": "\n"}),
        ]
    )
    assert got == ["one two ", "plain"]  # the echo, cut at the first `until`
    # The mock scores each continuation character at -1.0; greedy when it is in the context.
    assert lm.loglikelihood(
        [request("loglikelihood", "Paris is", "Paris"), request("loglikelihood", "a", "Rome")]
    ) == [(-5.0, True), (-4.0, False)]
    assert lm.loglikelihood_rolling([request("loglikelihood_rolling", "abc")]) == [-3.0]
    assert lm.model.usage.input_tokens > 0  # counted by gauge's pipeline


def test_chat_templated_turns_are_sent_as_messages() -> None:
    seen: list[list[tuple[str, str]]] = []

    def reply(messages: list[Any], *_: Any) -> str:
        seen.append([(m.role, m.text) for m in messages])
        return "42"

    lm = GaugeLM(model="mock/chat", memoize=False, outputs=reply)
    turns = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "6*7?"}]
    context = lm.apply_chat_template(turns)
    assert lm.generate_until([request("generate_until", context, {"until": []})]) == ["42"]
    assert seen == [[("system", "be brief"), ("user", "6*7?")]]
    with pytest.raises(UnsupportedFeature, match="loglikelihood with --apply_chat_template"):
        lm.loglikelihood([request("loglikelihood", context, " 42")])


def write_tasks(folder: Path) -> Path:
    data = folder / "sums.jsonl"
    with data.open("w") as file:
        for a, b in SUMS:
            question, total = f"What is {a}+{b}?", a + b
            row = {
                "input": question,
                "target": str(total),
                "choices": [str(total + 1), str(total), str(total + 10)],
                "answer": 1,
                "text": f"<|user|>{question}<|assistant|>{total}<|eos|>",
            }
            file.write(json.dumps(row) + "\n")
    head = (
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    )
    (folder / "gen.yaml").write_text(
        "task: tiny_gen\n" + head + "output_type: generate_until\n"
        'doc_to_text: "{{input}}"\ndoc_to_target: "{{target}}"\n'
        'generation_kwargs:\n  until: ["<|eos|>"]\n  max_gen_toks: 8\n  do_sample: false\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (folder / "mc.yaml").write_text(
        "task: tiny_mc\n" + head + "output_type: multiple_choice\n"
        'doc_to_text: "<|user|>{{input}}<|assistant|>"\ndoc_to_choice: choices\n'
        'doc_to_target: answer\ntarget_delimiter: ""\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (folder / "ppl.yaml").write_text(
        "task: tiny_ppl\n" + head + "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: byte_perplexity\n    aggregation: weighted_perplexity\n"
        "    higher_is_better: false\n"
    )
    return folder


def evaluate(model: str, args: str, tasks: list[str], folder: Path, **kw: Any) -> dict[str, Any]:
    result = lm_eval.simple_evaluate(
        model=model,
        model_args=args,
        tasks=tasks,
        task_manager=TaskManager(include_path=str(folder)),
        log_samples=True,
        **kw,
    )
    assert result is not None
    return result


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_tasks_score_the_same_through_gauge_as_on_lm_evals_own_hf(
    tmp_path: Path, offline: None
) -> None:
    folder = write_tasks(tmp_path)
    own_args = f"pretrained={TINY},device=cpu"
    ours = evaluate("gauge", "model=hf/gauge-tiny", ["tiny_gen", "tiny_mc", "tiny_ppl"], folder)
    # lm-eval's hf sends raw text; gauge templates a chat model's turns, as lm-eval's hf
    # does with --apply_chat_template: the generation task is compared that way.
    own_gen = evaluate("hf", own_args, ["tiny_gen"], folder, apply_chat_template=True)
    own = evaluate("hf", own_args, ["tiny_mc", "tiny_ppl"], folder)

    def responses(result: dict[str, Any], task: str) -> list[Any]:
        return [s["resps"] for s in result["samples"][task]]

    assert responses(ours, "tiny_gen") == responses(own_gen, "tiny_gen")
    assert [r[0][0] for r in responses(ours, "tiny_gen")] == [str(a + b) for a, b in SUMS]
    assert ours["results"]["tiny_gen"]["exact_match,none"] == 1.0
    for mine, theirs in zip(responses(ours, "tiny_mc"), responses(own, "tiny_mc"), strict=True):
        assert [c[0][1] for c in mine] == [c[0][1] for c in theirs]  # is_greedy
        assert [c[0][0] for c in mine] == pytest.approx([c[0][0] for c in theirs], abs=1e-4)
    assert ours["results"]["tiny_mc"]["acc,none"] == own["results"]["tiny_mc"]["acc,none"] == 1.0
    assert ours["results"]["tiny_ppl"]["byte_perplexity,none"] == pytest.approx(
        own["results"]["tiny_ppl"]["byte_perplexity,none"], rel=1e-5
    )


def test_lm_evals_command_line_runs_the_gauge_model(tmp_path: Path, offline: None) -> None:
    folder = write_tasks(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gauge.integrations.lm_eval_model",
            "--model",
            "gauge",
            "--model_args",
            "model=hf/gauge-tiny",
            "--tasks",
            "tiny_mc",
            "--include_path",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = [line for line in done.stdout.splitlines() if line.startswith("|tiny_mc")]
    assert [cell.strip() for cell in row.split("|")][5:8] == ["acc", "↑", "1"]
