"""Multiple choice by loglikelihood: acc and acc_norm as lm-eval defines them."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from gauge import Task
from gauge.dataset import Sample
from gauge.errors import ConfigError
from gauge.evaluation.loglikelihood import acc, acc_norm, multiple_choice_loglikelihood
from gauge.evaluation.runner import eval_async
from gauge.model.api import ModelAPI
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput
from gauge.model.registry import modelapi, unregister
from gauge.model.scoring import Loglikelihood, LoglikelihoodRequest
from gauge.model.tools import ToolChoice, ToolInfo

# Summed logprobs per continuation text. " Paris" wins on the raw sum; " Lyon and
# Marseille" has the lowest sum but the best per-character average, so acc and
# acc_norm disagree on it, which is exactly what acc_norm exists for.
TABLE = {
    " Paris": -2.0,  # 5 chars: -0.400 per char
    " Lyon and Marseille": -5.0,  # 18 chars: -0.278 per char
    " Rome": -4.0,  # 4 chars: -1.000 per char
}


class TableAPI(ModelAPI):
    """Scores continuations from TABLE and records every batch it was sent."""

    supports_loglikelihood = True
    batches: ClassVar[list[list[LoglikelihoodRequest]]] = []
    configs: ClassVar[list[GenerateConfig]] = []

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        raise AssertionError("multiple_choice_loglikelihood must not generate")

    async def loglikelihood(
        self, requests: list[LoglikelihoodRequest], config: GenerateConfig
    ) -> list[Loglikelihood]:
        TableAPI.batches.append(list(requests))
        TableAPI.configs.append(config)
        return [Loglikelihood(TABLE[r.continuation], r.continuation == " Paris") for r in requests]


@pytest.fixture
def table_model() -> Iterator[str]:
    TableAPI.batches.clear()
    TableAPI.configs.clear()
    modelapi("table")(TableAPI)
    yield "table/t"
    unregister("table")


def sample(target: str, sid: str = "q1") -> Sample:
    return Sample(
        input="What is the capital of France?",
        choices=["Paris", "Lyon and Marseille", "Rome"],
        target=target,
        id=sid,
    )


async def test_acc_takes_the_highest_sum_and_acc_norm_the_best_per_character(
    table_model: str, tmp_path: Path
) -> None:
    task = Task(
        [sample("A", "a"), sample("B", "b"), sample("Rome", "c")],
        solver=multiple_choice_loglikelihood("Question: {question}\nAnswer:"),
        scorer=[acc(), acc_norm()],
    )
    [result] = await eval_async(task, table_model, log_dir=tmp_path, display=False)
    # acc picks A (Paris) everywhere; acc_norm picks B (Lyon and Marseille).
    assert result.metrics["acc"]["accuracy"] == pytest.approx(1 / 3)
    assert result.metrics["acc_norm"]["accuracy"] == pytest.approx(1 / 3)
    records = [orjson.loads(x) for x in Path(result.journal).read_bytes().splitlines()]
    by_id = {r["id"]: r for r in records if r["type"] == "sample"}
    assert by_id["a"]["scores"]["acc"] == {"value": "C", "answer": "A"}
    assert by_id["a"]["scores"]["acc_norm"] == {"value": "I", "answer": "B"}
    assert by_id["b"]["scores"]["acc_norm"] == {"value": "C", "answer": "B"}
    assert by_id["c"]["scores"]["acc"]["value"] == "I"
    stored = by_id["a"]["store"]["loglikelihood"]
    assert stored["logprobs"] == [-2.0, -5.0, -4.0]
    assert stored["is_greedy"] == [True, False, False]
    assert stored["lengths"] == [5, 18, 4]
    # Every request: the rendered context and " " + choice, lm-eval's target delimiter.
    sent = [r for batch in TableAPI.batches for r in batch]
    assert len(sent) == 9
    assert {r.context for r in sent} == {"Question: What is the capital of France?\nAnswer:"}
    assert sorted({r.continuation for r in sent}) == sorted(TABLE)


async def test_the_run_config_reaches_the_scoring_calls(table_model: str, tmp_path: Path) -> None:
    task = Task([sample("A")], solver=multiple_choice_loglikelihood(), scorer=acc())
    await eval_async(
        task, table_model, log_dir=tmp_path, display=False, config=GenerateConfig(timeout=7)
    )
    assert TableAPI.configs and all(c.timeout == 7 for c in TableAPI.configs)


async def test_ties_go_to_the_first_choice(table_model: str, tmp_path: Path) -> None:
    tie = Sample(input="Q", choices=["Rome", "Rome"], target="B", id="t")
    task = Task([tie], solver=multiple_choice_loglikelihood(), scorer=[acc(), acc_norm()])
    [result] = await eval_async(task, table_model, log_dir=tmp_path, display=False)
    assert result.metrics["acc"]["accuracy"] == 0.0
    assert result.metrics["acc_norm"]["accuracy"] == 0.0


async def test_a_sample_without_choices_is_a_clear_sample_error(
    table_model: str, tmp_path: Path
) -> None:
    task = Task(
        [Sample(input="Q", target="A", id="x")],
        solver=multiple_choice_loglikelihood(),
        scorer=acc(),
    )
    [result] = await eval_async(task, table_model, log_dir=tmp_path, display=False, max_errors=1)
    records = [orjson.loads(x) for x in Path(result.journal).read_bytes().splitlines()]
    [rec] = [r for r in records if r["type"] == "sample"]
    assert rec["error"]["message"] == (
        "sample 'x' has no choices; multiple_choice_loglikelihood needs sample.choices"
    )


async def test_acc_without_the_solver_says_what_is_missing(tmp_path: Path) -> None:
    task = Task([sample("A")], scorer=acc())
    [result] = await eval_async(task, "mock/echo", log_dir=tmp_path, display=False, max_errors=1)
    records = [orjson.loads(x) for x in Path(result.journal).read_bytes().splitlines()]
    [rec] = [r for r in records if r["type"] == "sample"]
    assert rec["error"]["message"] == (
        "scorer acc needs the multiple_choice_loglikelihood solver to run first"
    )


def test_template_must_name_the_question() -> None:
    with pytest.raises(ConfigError, match=r"must contain \{question\}"):
        multiple_choice_loglikelihood("Answer:")


class PlainAPI(ModelAPI):
    """Generates only: the ModelAPI defaults for scoring apply."""

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        raise AssertionError("not called")


async def test_a_provider_that_cannot_score_says_so(tmp_path: Path) -> None:
    task = Task([sample("A")], solver=multiple_choice_loglikelihood(), scorer=acc())
    modelapi("plain")(PlainAPI)
    try:
        [result] = await eval_async(task, "plain/p", log_dir=tmp_path, display=False, max_errors=1)
    finally:
        unregister("plain")
    records: list[dict[str, Any]] = [
        orjson.loads(x) for x in Path(result.journal).read_bytes().splitlines()
    ]
    [rec] = [r for r in records if r["type"] == "sample"]
    assert rec["error"]["type"] == "UnsupportedFeature"
    assert rec["error"]["message"].startswith("provider 'plain' cannot score loglikelihoods;")
