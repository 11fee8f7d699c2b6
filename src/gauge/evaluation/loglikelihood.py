"""Multiple choice scored by loglikelihood, the way lm-eval scores MMLU or HellaSwag.

    solver=multiple_choice_loglikelihood(), scorer=[acc(), acc_norm()]

The solver scores every choice as a continuation of the prompt (`delimiter` +
choice text, " " by default, lm-eval's `target_delimiter`) with
`Model.score`, one request per choice, and keeps the summed logprobs in
`state.store["loglikelihood"]`. Nothing is generated.

- `acc`: the choice with the highest summed logprob is the answer.
- `acc_norm`: the same after dividing each logprob by the choice's length in
  characters (lm-eval's definition), which removes the bias towards short answers.

Ties go to the first choice, as `numpy.argmax` does in lm-eval.
"""

from __future__ import annotations

from collections.abc import Sequence

from gauge.errors import ConfigError
from gauge.evaluation.metrics import CORRECT, INCORRECT, accuracy, stderr
from gauge.evaluation.scorer import Score, Scorer, target_letters
from gauge.evaluation.solver import Generate, Solver, letter_for, render
from gauge.evaluation.state import TaskState, active_config, helper_model
from gauge.model.config import GenerateConfig
from gauge.model.model import Model
from gauge.model.scoring import LoglikelihoodRequest

STORE_KEY = "loglikelihood"
"""Where the solver leaves its results in `state.store` (the journal keeps them)."""


def multiple_choice_loglikelihood(
    template: str = "{question}",
    delimiter: str = " ",
    model: str | Model | None = None,
    config: GenerateConfig | None = None,
) -> Solver:
    """Score each of `sample.choices` as a continuation of the rendered `template`.

    `template` takes `{question}` (the sample's input text) and the sample's
    metadata, e.g. "Question: {question}\\nAnswer:". `model` defaults to the
    evaluated model; `config` is layered over the run's (cache, timeout, retries).
    """
    if "{question}" not in template:
        raise ConfigError("multiple_choice_loglikelihood template must contain {question}")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        choices = state.choices
        if not choices:
            raise ConfigError(
                f"sample {state.sample_id!r} has no choices; "
                "multiple_choice_loglikelihood needs sample.choices"
            )
        scorer_model = helper_model(model, config)
        run_config = active_config.get() if model is None else None
        cfg = _layer(run_config, config)
        context = render(template, state, {"question": state.input_text})
        results = await scorer_model.score(
            [LoglikelihoodRequest(context, delimiter + choice) for choice in choices],
            config=cfg,
        )
        logprobs = [r.logprob for r in results]
        lengths = [len(choice) for choice in choices]
        state.store[STORE_KEY] = {
            "context": context,
            "logprobs": logprobs,
            "is_greedy": [r.is_greedy for r in results],
            "lengths": lengths,
            "pick": letter_for(_argmax(logprobs)),
            "pick_norm": letter_for(
                _argmax([lp / max(n, 1) for lp, n in zip(logprobs, lengths, strict=True)])
            ),
        }
        return state

    return solve


def acc() -> Scorer:
    """Correct when the highest-loglikelihood choice is the target (lm-eval's `acc`)."""
    return _pick_scorer("acc", "pick")


def acc_norm() -> Scorer:
    """Correct when the highest length-normalised choice is the target (lm-eval's `acc_norm`)."""
    return _pick_scorer("acc_norm", "pick_norm")


def _pick_scorer(name: str, field: str) -> Scorer:
    async def score(state: TaskState, target: list[str]) -> Score:
        found = state.store.get(STORE_KEY)
        if not isinstance(found, dict) or field not in found:
            raise ConfigError(
                f"scorer {name} needs the multiple_choice_loglikelihood solver to run first"
            )
        pick: str = found[field]
        wanted = target_letters(target, state.choices or [])
        return Score(CORRECT if pick in wanted else INCORRECT, answer=pick)

    return Scorer(name, score, (accuracy(), stderr()))


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


def _layer(base: GenerateConfig | None, top: GenerateConfig | None) -> GenerateConfig | None:
    if base is None:
        return top
    return base if top is None else base.merge(top)
