"""Scorers: turn a solved TaskState and its target into a Score.

A scorer is `async def score(state, target) -> Score` carrying the metrics it
reports (`scorer.metrics`). Text scorers compare the completion with each
acceptable target; model-graded scorers ask a grader model (`model=`, a name or
a Model, with its own config) and read its grade.
"""

from __future__ import annotations

import re
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gauge.errors import ConfigError
from gauge.evaluation.metrics import CORRECT, INCORRECT, PARTIAL, Metric, accuracy, mean, stderr
from gauge.evaluation.solver import letter_for, parse_answer, render
from gauge.evaluation.state import TaskState, helper_model
from gauge.model.config import GenerateConfig
from gauge.model.model import Model


@dataclass(slots=True)
class Score:
    """A scorer's verdict: a value (C/I/P or a number), the answer it read, why."""

    value: str | float | int | bool
    answer: str | None = None
    explanation: str | None = None
    metadata: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the journal."""
        out: dict[str, Any] = {"value": self.value}
        if self.answer is not None:
            out["answer"] = self.answer
        if self.explanation is not None:
            out["explanation"] = self.explanation
        if self.metadata:
            out["metadata"] = self.metadata
        return out


ScoreFn = Callable[[TaskState, list[str]], Awaitable[Score]]


@dataclass(frozen=True, slots=True)
class Scorer:
    """A named scoring function with the metrics it reports."""

    name: str
    score: ScoreFn
    metrics: tuple[Metric, ...]

    async def __call__(self, state: TaskState, target: list[str]) -> Score:
        return await self.score(state, target)


def scorer(fn: ScoreFn, name: str | None = None, metrics: Sequence[Metric] | None = None) -> Scorer:
    """Wrap your own `async (state, target) -> Score` function as a Scorer."""
    label = name or str(getattr(fn, "__name__", "scorer"))
    return Scorer(label, fn, tuple(metrics or (accuracy(), stderr())))


def _verdict(ok: bool, answer: str, explanation: str | None = None) -> Score:
    return Score(CORRECT if ok else INCORRECT, answer=answer, explanation=explanation)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _normalise(text: str, ignore_case: bool, numeric: bool) -> str:
    text = text.strip()
    if ignore_case:
        text = text.lower()
    if numeric:
        text = text.replace(",", "").rstrip(".")
        try:
            number = float(text)
            text = str(int(number)) if number.is_integer() else str(number)
        except ValueError:
            pass
    return text


def match(
    location: Literal["begin", "end", "any", "exact"] = "end",
    ignore_case: bool = True,
    numeric: bool = False,
) -> Scorer:
    """Correct when a target is at `location` of the completion (numbers compared as numbers)."""
    if location not in ("begin", "end", "any", "exact"):
        raise ConfigError(f"match location {location!r} is not begin, end, any or exact")

    async def score(state: TaskState, target: list[str]) -> Score:
        completion = state.completion.strip()
        answer = completion
        if numeric:
            numbers = _NUMBER.findall(completion)
            if numbers:
                answer = numbers[-1] if location == "end" else numbers[0]
        found = _normalise(answer, ignore_case, numeric)
        for wanted in target:
            goal = _normalise(wanted, ignore_case, numeric)
            if location == "exact" or numeric:
                ok = found == goal or (location == "any" and goal in found)
            elif location == "begin":
                ok = found.startswith(goal)
            elif location == "end":
                ok = found.rstrip(" .").endswith(goal)
            else:
                ok = goal in found
            if ok:
                return _verdict(True, answer)
        return _verdict(False, answer)

    return Scorer("match", score, (accuracy(), stderr()))


def includes(ignore_case: bool = True) -> Scorer:
    """Correct when a target appears anywhere in the completion."""

    async def score(state: TaskState, target: list[str]) -> Score:
        completion = state.completion
        haystack = completion.lower() if ignore_case else completion
        ok = any((t.lower() if ignore_case else t) in haystack for t in target)
        return _verdict(ok, completion)

    return Scorer("includes", score, (accuracy(), stderr()))


def _squash(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def exact() -> Scorer:
    """Correct when the completion equals a target after normalising case, punctuation, articles."""

    async def score(state: TaskState, target: list[str]) -> Score:
        answer = _squash(state.completion)
        return _verdict(any(answer == _squash(t) for t in target), state.completion.strip())

    return Scorer("exact", score, (accuracy(), stderr()))


def pattern(regex: str, ignore_case: bool = True, match_all: bool = False) -> Scorer:
    """Extract the answer with `regex` (first group, or the whole match); compare to targets."""
    try:
        compiled = re.compile(regex, re.IGNORECASE if ignore_case else 0)
    except re.error as ex:
        raise ConfigError(f"pattern {regex!r} is not a valid regular expression: {ex}") from None

    async def score(state: TaskState, target: list[str]) -> Score:
        found = compiled.search(state.completion)
        if found is None:
            return Score(INCORRECT, answer=None, explanation="pattern not found")
        groups = [g for g in found.groups() if g is not None] or [found.group(0)]
        norm = (lambda s: s.strip().lower()) if ignore_case else str.strip
        goals = {norm(t) for t in target}
        hits = [norm(g) in goals for g in groups]
        ok = all(hits) if match_all else any(hits)
        return _verdict(ok, groups[0])

    return Scorer("pattern", score, (accuracy(), stderr()))


def choice() -> Scorer:
    """Score `multiple_choice`: correct when the chosen letter is the target letter (or text)."""

    async def score(state: TaskState, target: list[str]) -> Score:
        choices = state.choices or []
        letters = [letter_for(i) for i in range(len(choices))]
        chosen = state.store.get("answer_letter") or parse_answer(state.completion, letters)
        wanted = target_letters(target, choices)
        return _verdict(chosen is not None and chosen in wanted, chosen or "")

    return Scorer("choice", score, (accuracy(), stderr()))


def target_letters(target: Sequence[str], choices: Sequence[str]) -> set[str]:
    """The letters a multiple-choice target names: a letter ("B") or a choice's text."""
    letters = [letter_for(i) for i in range(len(choices))]
    wanted = set()
    for t in target:
        t = t.strip()
        if t.upper() in letters:
            wanted.add(t.upper())
        elif t in choices:
            wanted.add(letters[list(choices).index(t)])
    return wanted


def _tokens(text: str) -> list[str]:
    return _squash(text).split()


def f1() -> Scorer:
    """Token-overlap F1 between the completion and the best-matching target (0..1)."""

    async def score(state: TaskState, target: list[str]) -> Score:
        answer = _tokens(state.completion)
        best = 0.0
        for t in target:
            goal = _tokens(t)
            common = sum(min(answer.count(w), goal.count(w)) for w in set(goal))
            if common:
                precision, recall = common / len(answer), common / len(goal)
                best = max(best, 2 * precision * recall / (precision + recall))
        return Score(best, answer=state.completion.strip())

    return Scorer("f1", score, (mean(), stderr()))


FACT_TEMPLATE = """You are comparing a submitted answer to an expert answer on a given question.

[BEGIN DATA]
************
[Question]: {question}
************
[Expert]: {criterion}
************
[Submission]: {answer}
************
[END DATA]

Does the submission contain the content in the expert answer? {instructions}"""

QA_TEMPLATE = """You are assessing a submitted answer on a given task based on a criterion.

[BEGIN DATA]
***
[Task]: {question}
***
[Submission]: {answer}
***
[Criterion]: {criterion}
***
[END DATA]

Does the submission meet the criterion? {instructions}"""

INSTRUCTIONS = """Reason step by step, then finish with "GRADE: C" if it does (correct) or \
"GRADE: I" if it does not (incorrect)."""

PARTIAL_INSTRUCTIONS = """Reason step by step, then finish with "GRADE: C" (correct), \
"GRADE: P" (partially correct) or "GRADE: I" (incorrect)."""

GRADE_PATTERN = r"GRADE\s*:\s*([CPI])"


def model_graded_qa(
    model: str | Model | None = None,
    config: GenerateConfig | None = None,
    template: str = QA_TEMPLATE,
    instructions: str | None = None,
    partial_credit: bool = False,
    grade_pattern: str = GRADE_PATTERN,
) -> Scorer:
    """Ask a grader model whether the answer meets the target (used as the criterion)."""
    return _graded(
        "model_graded_qa", template, model, config, instructions, partial_credit, grade_pattern
    )


def model_graded_fact(
    model: str | Model | None = None,
    config: GenerateConfig | None = None,
    template: str = FACT_TEMPLATE,
    instructions: str | None = None,
    partial_credit: bool = False,
    grade_pattern: str = GRADE_PATTERN,
) -> Scorer:
    """Ask a grader model whether the answer contains the fact in the target."""
    return _graded(
        "model_graded_fact", template, model, config, instructions, partial_credit, grade_pattern
    )


def _graded(
    name: str,
    template: str,
    model: str | Model | None,
    config: GenerateConfig | None,
    instructions: str | None,
    partial_credit: bool,
    grade_pattern: str,
) -> Scorer:
    try:
        grade_re = re.compile(grade_pattern, re.IGNORECASE)
    except re.error as ex:
        raise ConfigError(f"{name} grade_pattern is not a valid regex: {ex}") from None
    text = instructions or (PARTIAL_INSTRUCTIONS if partial_credit else INSTRUCTIONS)
    allowed = {CORRECT, INCORRECT, PARTIAL} if partial_credit else {CORRECT, INCORRECT}

    async def score(state: TaskState, target: list[str]) -> Score:
        grader = helper_model(model, config)
        prompt = render(
            template,
            state,
            {
                "question": state.input_text,
                "answer": state.completion,
                "criterion": "\n".join(target),
                "instructions": text,
            },
        )
        output = await grader.generate(prompt, config=config)
        grades = grade_re.findall(output.completion)
        grade = grades[-1].upper() if grades else None
        if grade not in allowed:
            return Score(
                INCORRECT,
                answer=state.completion,
                explanation=output.completion,
                metadata={"grader": grader.name, "grade": None},
            )
        return Score(
            grade,
            answer=state.completion,
            explanation=output.completion,
            metadata={"grader": grader.name, "grade": grade},
        )

    return Scorer(name, score, (accuracy(), stderr()))
