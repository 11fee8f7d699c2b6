"""A template provider for a made-up JSON API ("myapi"), and a task to run it on.

The provider is the whole integration: a payload builder and two parsers, as in
lm-evaluation-harness's TemplateAPI. Batching, concurrency, retries, the cache,
timeouts and the tokenizer come from gauge. Try it against the fake server:

    python examples/custom_api_server.py --port 8765 --api-key secret &
    MYAPI_API_KEY=secret gauge eval examples/custom_api.py@sums --model myapi/sums \\
        --model-base-url http://127.0.0.1:8765 -M batch_size=8 -M num_concurrent=2 --limit 40

`sums_choice` scores the same sums by loglikelihood instead (POST /score):
`gauge eval examples/custom_api.py@sums_choice ...` with the same flags.

Importing this file registers the provider, so any script can use it too:

    import custom_api  # noqa: F401 (registers myapi/)
    model = gauge.get_model("myapi/sums", base_url="http://127.0.0.1:8765", api_key="secret")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import orjson

from gauge import Task, task
from gauge.dataset import Sample, json_dataset
from gauge.model import modelapi
from gauge.model.providers.template import TemplateAPI
from gauge.scorer import acc, acc_norm, match
from gauge.solver import generate, multiple_choice_loglikelihood

DATA = Path(__file__).parent / "data" / "arithmetic.jsonl"


@modelapi("myapi")
class MyAPI(TemplateAPI):
    """myapi: POST /generate and POST /score, each taking a list of requests."""

    message_format = "text"  # `messages` is a list of prompt strings
    generate_path = "generate"
    loglikelihood_path = "score"
    default_batch_size = 8  # the API takes lists: 8 requests per call unless -M batch_size=
    honours: ClassVar[frozenset[str]] = frozenset(
        {"max_tokens", "temperature", "stop_seqs", "seed"}
    )

    def create_payload(
        self,
        messages: Any,
        *,
        generate: bool = True,
        gen_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        pairs: list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The JSON body for one call: prompts to complete, or pairs to score."""
        if not generate:
            return {
                "model": self.model_name,
                "pairs": [{"context": c, "continuation": x} for c, x in pairs or ()],
            }
        settings = gen_kwargs or {}
        payload: dict[str, Any] = {
            "model": self.model_name,
            "inputs": messages,
            "max_new_tokens": settings["max_gen_toks"],
            "stop": settings["until"],
        }
        if "temperature" in settings:
            payload["temperature"] = settings["temperature"]
        if seed is not None:
            payload["seed"] = seed
        return payload

    @staticmethod
    def parse_generations(outputs: Any) -> list[str]:
        """One text per prompt, in order."""
        return [result["text"] for result in outputs["results"]]

    @staticmethod
    def parse_logprobs(
        outputs: Any, tokens: Any = None, ctxlens: Any = None
    ) -> list[tuple[float, bool]]:
        """(logprob, is_greedy) per pair, in order."""
        return [(s["logprob"], s["greedy"]) for s in outputs["scores"]]

    @property
    def header(self) -> dict[str, str]:
        """myapi takes its key in X-API-Key (read from MYAPI_API_KEY or api_key=)."""
        key = self.api_key_value()
        return {"X-API-Key": key} if key else {}


@task
def sums(limit: int | None = None) -> Task:
    """Answer "What is A+B?" with the sum (the arithmetic example's data)."""
    return Task(
        dataset=json_dataset(DATA, limit=limit),
        solver=[generate()],
        scorer=match(location="end", numeric=True),
    )


@task
def sums_choice(limit: int = 40) -> Task:
    """The same sums as four-way multiple choice, scored by loglikelihood (lm-eval style)."""
    samples = []
    for i, line in enumerate(DATA.read_bytes().splitlines()[:limit]):
        record = orjson.loads(line)
        right = int(record["target"])
        wrong = [str(right + 1), str(right + 2), str(right + 10)]
        position = i % 4  # the right answer moves through A-D
        choices = [*wrong[:position], str(right), *wrong[position:]]
        samples.append(
            Sample(input=record["input"], choices=choices, target="ABCD"[position], id=record["id"])
        )
    return Task(
        dataset=samples,
        solver=multiple_choice_loglikelihood("{question}\nAnswer:"),
        scorer=[acc(), acc_norm()],
    )
