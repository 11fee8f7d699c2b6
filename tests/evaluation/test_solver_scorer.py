from typing import Any

import pytest

from gauge.errors import ConfigError
from gauge.evaluation.state import TaskState, _active_model
from gauge.model import GenerateConfig, get_model
from gauge.model.messages import ChatMessageUser
from gauge.scorer import (
    choice,
    exact,
    f1,
    includes,
    match,
    model_graded_fact,
    model_graded_qa,
    pattern,
)
from gauge.solver import (
    chain,
    chain_of_thought,
    generate,
    multiple_choice,
    prompt_template,
    self_critique,
    system_message,
    user_message,
)


def make_state(text: str = "Q?", target: list[str] | None = None, **kw: Any) -> TaskState:
    return TaskState(
        model="mock/m",
        sample_id=1,
        epoch=1,
        input=text,
        messages=[ChatMessageUser(content=text)],
        target=target or ["A"],
        **kw,
    )


class Recorder:
    """A Generate that replies with fixed text and records what it was sent."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.seen: list[list[tuple[str, str]]] = []
        self.configs: list[GenerateConfig | None] = []

    async def __call__(self, state: TaskState, config: GenerateConfig | None = None) -> TaskState:
        self.seen.append([(m.role, m.text) for m in state.messages])
        self.configs.append(config)
        model = get_model("mock/x", outputs=[self.reply])
        state.output = await model.generate(state.messages)
        state.messages.append(state.output.message)
        return state


def completed(text: str, target: list[str] | None = None, **kw: Any) -> TaskState:
    state = make_state(target=target, **kw)
    state.output = __import__("gauge").ModelOutput.from_content("mock/m", text)
    return state


async def test_chain_of_system_template_user_generate() -> None:
    gen = Recorder("done")
    solver = chain(
        system_message("You grade {subject}."),
        prompt_template("Question: {prompt}"),
        user_message("Be brief, {who}.", who="please"),
        generate(GenerateConfig(temperature=0)),
    )
    state = make_state("2+2?", metadata={"subject": "math"})
    state = await solver(state, gen)
    assert gen.seen[0] == [
        ("system", "You grade math."),
        ("user", "Question: 2+2?"),
        ("user", "Be brief, please."),
    ]
    assert gen.configs[0] == GenerateConfig(temperature=0)
    assert state.completion == "done" and state.messages[-1].role == "assistant"


async def test_missing_template_variable_is_clear() -> None:
    with pytest.raises(ConfigError, match=r"template variable \{subject\} has no value"):
        await system_message("about {subject}")(make_state(), Recorder("x"))
    with pytest.raises(ConfigError, match=r"must contain \{prompt\}"):
        prompt_template("no prompt here")


async def test_chain_of_thought_rewrites_prompt() -> None:
    gen = Recorder("ANSWER: 4")
    await chain(chain_of_thought(), generate())(make_state("2+2?"), gen)
    assert gen.seen[0][0][1].startswith("2+2?\n\nBefore answering, reason")


async def test_multiple_choice_and_choice_scorer() -> None:
    gen = Recorder("Thinking... ANSWER: C")
    state = make_state("Closest planet?", target=["C"], choices=["Venus", "Earth", "Mercury"])
    state = await multiple_choice()(state, gen)
    prompt = gen.seen[0][0][1]
    assert "A) Venus\nB) Earth\nC) Mercury" in prompt and "one of A,B,C" in prompt
    assert state.store["answer_letter"] == "C"
    assert (await choice()(state, ["C"])).value == "C"
    assert (await choice()(state, ["Mercury"])).value == "C"  # target given as the choice text
    assert (await choice()(state, ["A"])).value == "I"
    with pytest.raises(ConfigError, match="has no choices"):
        await multiple_choice()(make_state(), gen)


async def test_self_critique_uses_its_own_model_and_config() -> None:
    critic = get_model("mock/critic", memoize=False, outputs=["The answer is wrong; it is 4."])
    gen = Recorder("4")
    state = completed("5", target=["4"])
    state.messages.append(state.output.message)
    state = await self_critique(model=critic, config=GenerateConfig(temperature=0))(state, gen)
    assert critic.api.calls == 1
    last_user = gen.seen[0][-1][1]
    assert "[Critique]: The answer is wrong; it is 4." in last_user and "[Answer]: 5" in last_user
    assert state.completion == "4"


@pytest.mark.parametrize(
    ("scorer", "text", "target", "value"),
    [
        (match(), "The answer is 42", ["42"], "C"),
        (match(), "42 is it", ["42"], "I"),
        (match(location="begin"), "42 is it", ["42"], "C"),
        (match(location="exact"), " Paris ", ["paris"], "C"),
        (match(numeric=True), "So the sum is 1,000.", ["1000"], "C"),
        (match(numeric=True), "The sum is 10.0", ["10"], "C"),
        (match(numeric=True), "The sum is 11", ["10"], "I"),
        (includes(), "I think PARIS.", ["paris"], "C"),
        (includes(ignore_case=False), "I think PARIS.", ["paris"], "I"),
        (exact(), "The Paris!", ["paris"], "C"),
        (exact(), "Paris, France", ["paris"], "I"),
        (pattern(r"ANSWER:\s*(\w+)"), "blah ANSWER: yes", ["YES"], "C"),
        (pattern(r"ANSWER:\s*(\w+)"), "no marker", ["yes"], "I"),
    ],
)
async def test_text_scorers(scorer: Any, text: str, target: list[str], value: str) -> None:
    assert (await scorer(completed(text, target), target)).value == value


async def test_f1() -> None:
    score = await f1()(completed("the cat sat", ["cat sat down"]), ["cat sat down"])
    # tokens (articles dropped): [cat, sat] vs [cat, sat, down]: p=1, r=2/3
    assert score.value == pytest.approx(0.8)
    assert f1().metrics[0].name == "mean"


def test_bad_pattern_and_location() -> None:
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        pattern("(")
    with pytest.raises(ConfigError, match="match location"):
        match(location="middle")  # type: ignore[arg-type]


async def test_model_graded_fact_uses_grader_model_and_reads_grade() -> None:
    grader = get_model("mock/grader", memoize=False, outputs=["Reasoning... GRADE: C", "GRADE: P"])
    scorer = model_graded_fact(model=grader)
    state = completed("Paris is the capital", ["Paris"], metadata={})
    score = await scorer(state, ["Paris"])
    assert score.value == "C" and score.metadata == {"grader": "mock/grader", "grade": "C"}
    # P without partial credit is not an allowed grade: scored incorrect
    assert (await scorer(state, ["Paris"])).value == "I"


async def test_model_graded_qa_partial_and_default_grader_is_evaluated_model() -> None:
    evaluated = get_model("mock/self", memoize=False, outputs=["GRADE: P"])
    token = _active_model.set(evaluated)
    try:
        score = await model_graded_qa(partial_credit=True)(completed("half"), ["full"])
    finally:
        _active_model.reset(token)
    assert score.value == "P" and evaluated.api.calls == 1


async def test_grader_by_name_gets_its_own_config() -> None:
    scorer = model_graded_qa(model="mock/g", config=GenerateConfig(max_tokens=2))
    score = await scorer(completed("x"), ["y"])
    # the mock echoes the prompt cut to max_tokens=2 words: no grade -> incorrect
    assert score.value == "I" and score.explanation == "You are"
