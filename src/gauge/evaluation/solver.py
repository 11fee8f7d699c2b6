"""Solvers: chainable steps that turn a TaskState into an answered one.

A solver is `async def solve(state, generate) -> state`. `generate(state)` calls
the evaluated model with the conversation so far, appends its reply and sets
`state.output`. Solvers that call another model (`self_critique`) take `model=`
(a name or a Model) with their own config.
"""

from __future__ import annotations

import re
import string
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from gauge.errors import ConfigError
from gauge.evaluation.state import TaskState, helper_model
from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessageSystem, ChatMessageUser
from gauge.model.model import Model


class Generate(Protocol):
    """Calls the evaluated model on `state.messages` and records the reply."""

    async def __call__(
        self, state: TaskState, config: GenerateConfig | None = None
    ) -> TaskState: ...


Solver = Callable[[TaskState, Generate], Awaitable[TaskState]]


def chain(*solvers: Solver | Sequence[Solver]) -> Solver:
    """One solver running `solvers` in order (stops early when a state is completed)."""
    flat: list[Solver] = []
    for item in solvers:
        if callable(item):
            flat.append(item)
        else:
            flat.extend(item)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        for solver in flat:
            state = await solver(state, generate)
            if state.completed:
                break
        return state

    return solve


def generate(config: GenerateConfig | None = None) -> Solver:
    """Call the evaluated model (with `config` layered over the task's)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        return await generate(state, config)

    return solve


def system_message(template: str, **params: Any) -> Solver:
    """Insert a system message (after any existing ones); `{var}` takes metadata and params."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        text = render(template, state, params)
        index = 0
        while index < len(state.messages) and state.messages[index].role == "system":
            index += 1
        state.messages.insert(index, ChatMessageSystem(content=text))
        return state

    return solve


def user_message(template: str, **params: Any) -> Solver:
    """Append a user message; `{var}` takes metadata and params."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        state.messages.append(ChatMessageUser(content=render(template, state, params)))
        return state

    return solve


def prompt_template(template: str, **params: Any) -> Solver:
    """Rewrite the last user message through `template` (`{prompt}` is the original)."""
    _require(template, "prompt", "prompt_template")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        prompt = state.user_prompt
        prompt.text = render(template, state, {**params, "prompt": prompt.text})
        return state

    return solve


COT_TEMPLATE = """{prompt}

Before answering, reason in a step-by-step manner. Give your final answer on the last line \
as "ANSWER: $ANSWER" (without quotes), where $ANSWER is the answer."""


def chain_of_thought(template: str = COT_TEMPLATE) -> Solver:
    """Ask the model to reason step by step before its final `ANSWER:` line."""
    return prompt_template(template)


CRITIQUE_TEMPLATE = """Given the following question and answer, critique the answer. \
A good answer is correct and complete. If the answer is already correct, reply \
"The original answer is fully correct."

[BEGIN DATA]
***
[Question]: {question}
***
[Answer]: {completion}
***
[END DATA]

Critique: """

COMPLETION_TEMPLATE = """Given the following question, initial answer and critique, give an \
improved answer to the question.

[BEGIN DATA]
***
[Question]: {question}
***
[Answer]: {completion}
***
[Critique]: {critique}
***
[END DATA]

Give the improved answer in the same form as the initial one."""


def self_critique(
    model: str | Model | None = None,
    config: GenerateConfig | None = None,
    critique_template: str = CRITIQUE_TEMPLATE,
    completion_template: str = COMPLETION_TEMPLATE,
) -> Solver:
    """Have `model` (default: the evaluated model) critique the answer, then answer again."""
    _require(critique_template, "completion", "self_critique critique_template")
    _require(completion_template, "critique", "self_critique completion_template")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        critic = helper_model(model, config)
        values = {"question": state.input_text, "completion": state.completion}
        critique = await critic.generate(render(critique_template, state, values), config=config)
        state.messages.append(
            ChatMessageUser(
                content=render(
                    completion_template, state, {**values, "critique": critique.completion}
                )
            )
        )
        return await generate(state)

    return solve


MULTIPLE_CHOICE_TEMPLATE = """Answer the following multiple choice question. The last line of \
your response should be of the form "ANSWER: $LETTER" (without quotes) where LETTER is one of \
{letters}.

{question}

{choices}"""


def multiple_choice(
    template: str = MULTIPLE_CHOICE_TEMPLATE, config: GenerateConfig | None = None
) -> Solver:
    """Present `sample.choices` as lettered options, generate, and keep the chosen letter."""
    for name in ("question", "choices"):
        _require(template, name, "multiple_choice template")

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if not state.choices:
            raise ConfigError(
                f"sample {state.sample_id!r} has no choices; multiple_choice needs sample.choices"
            )
        letters = [letter_for(i) for i in range(len(state.choices))]
        prompt = state.user_prompt
        prompt.text = render(
            template,
            state,
            {
                "question": prompt.text,
                "choices": "\n".join(
                    f"{ltr}) {c}" for ltr, c in zip(letters, state.choices, strict=True)
                ),
                "letters": ",".join(letters),
            },
        )
        state = await generate(state, config)
        state.store["answer_letter"] = parse_answer(state.completion, letters)
        return state

    return solve


def letter_for(index: int) -> str:
    """A, B, ..., Z, then AA, AB, ..."""
    letters = string.ascii_uppercase
    return letters[index] if index < 26 else letter_for(index // 26 - 1) + letters[index % 26]


_ANSWER = re.compile(r"ANSWER\s*:\s*\(?([A-Za-z]{1,2})\)?\b", re.IGNORECASE)


def parse_answer(text: str, letters: Sequence[str]) -> str | None:
    """The letter after the last `ANSWER:`, or a lone letter reply; None when absent."""
    found = _ANSWER.findall(text)
    if found:
        letter = found[-1].upper()
        return letter if letter in letters else None
    stripped = text.strip().strip("().").upper()
    return stripped if stripped in letters else None


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise ConfigError(
            f"template variable {{{key}}} has no value; add it to the sample metadata or "
            "pass it as a parameter (write {{ and }} for literal braces)"
        )


def render(template: str, state: TaskState, values: dict[str, Any]) -> str:
    """`template` with `{name}` from `values`, then the sample metadata."""
    merged = _Values(state.metadata)
    merged.update(values)
    try:
        return template.format_map(merged)
    except (ValueError, IndexError) as ex:
        raise ConfigError(f"bad template {template[:40]!r}...: {ex}") from None


def _require(template: str, name: str, where: str) -> None:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if name not in fields:
        raise ConfigError(f"{where} must contain {{{name}}}")
