"""lm-evaluation-harness's TemplateAPI page (seed 003), run against gauge, offline.

The subclass is the page's example with only the imports changed; the command
lines are the page's `lm-eval run` lines spelled `gauge eval`. Requests go to a
fake OpenAI-compatible server on 127.0.0.1 that demands a bearer key and records
every path, header and body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from auth_server import AuthServer

from gauge.cli.main import main
from gauge.cli.model_args import parse_model_args
from gauge.errors import ConfigError, ModelError
from gauge.model import get_model, modelapi
from gauge.model.providers.template import TemplateAPI
from gauge.model.registry import unregister

KEY = "sk-lm-eval-5b1e77"
TINY = Path(__file__).parents[2] / "src" / "gauge" / "assets" / "gauge-tiny"


# -- the page's subclass, as written there (register_model -> modelapi) ----------------------


class MyAPIModel(TemplateAPI):
    def _create_payload(self, messages, gen_kwargs, *, seed=None, **kwargs):
        """Build the request payload."""
        return {
            "model": self.model,
            "prompt": messages,
            "max_tokens": gen_kwargs.get("max_gen_toks", 256),
            "temperature": gen_kwargs.get("temperature", 0),
        }

    def parse_logprobs(self, outputs, **kwargs):
        """Extract log probabilities from the API response."""
        return [output["logprobs"]["token_logprobs"] for output in outputs]

    def parse_generations(self, outputs, **kwargs):
        """Extract generated text from the API response."""
        return [output["choices"][0]["text"] for output in outputs]

    @property
    def header(self):
        return {"Authorization": f"Bearer {self.api_key}"}


class CharTokenizer:
    """One token per character (its code point); 0 is the prefix token."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    @property
    def prefix_token_id(self) -> int | None:
        return 0


@pytest.fixture
def my_api() -> Iterator[None]:
    modelapi("my_api")(MyAPIModel)
    try:
        yield
    finally:
        unregister("my_api")


async def test_the_pages_subclass_generates_and_authenticates(
    my_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_API_KEY", KEY)
    async with AuthServer(KEY, reply="4") as server:
        # base_url is the full endpoint: a TemplateAPI posts to it as given.
        endpoint = server.url.removesuffix("/v1") + "/api"
        async with get_model("my_api/my-model", base_url=endpoint, max_gen_toks=32) as model:
            output = await model.generate("2+2?", config={"temperature": 0.5})
            assert repr(model.api.api_key) == "'********'"
            assert model.api.model == "my-model"
    assert output.completion == "4"
    [seen] = server.seen
    assert server.rejected == 0
    assert seen.headers["authorization"] == f"Bearer {KEY}"  # not "Bearer ********"
    assert seen.body == {
        "model": "my-model",
        "prompt": [{"role": "user", "content": "2+2?"}],
        "max_tokens": 32,
        "temperature": 0.5,
    }


async def test_the_pages_subclass_scores_with_its_token_logprobs(my_api: None) -> None:
    async with AuthServer(KEY) as server:
        endpoint = server.url.removesuffix("/v1") + "/api"
        model = get_model(
            "my_api/my-model",
            base_url=endpoint,
            api_key=KEY,
            tokenizer=CharTokenizer(),
            memoize=False,
        )
        async with model:
            scores = await model.loglikelihood([("2+2=", " 4"), ("Paris is in", " France")])
    # The fake answers -0.25 per input token; the continuation's are summed (" 4" is
    # 2 tokens, " France" 7). Greediness is unknown from token logprobs: False.
    assert scores == [(-0.5, False), (-1.75, False)]
    assert server.seen[0].body["prompt"] == [[ord(c) for c in "2+2= 4"]]
    assert server.seen[0].body["max_tokens"] == 256  # gen_kwargs is {} when scoring


async def test_token_logprobs_without_a_tokenizer_is_one_line(my_api: None) -> None:
    async with AuthServer(KEY) as server:
        endpoint = server.url.removesuffix("/v1") + "/api"
        async with get_model("my_api/m", base_url=endpoint, api_key=KEY, memoize=False) as model:
            with pytest.raises(ModelError) as info:
                await model.loglikelihood([("2+2=", " 4")])
    assert str(info.value) == (
        "MyAPIModel.parse_logprobs returned token logprobs, but without a tokenizer gauge "
        "cannot tell which belong to the continuation: pass -M tokenizer=PATH, or return "
        "(logprob, is_greedy) pairs"
    )


# -- the page's command lines ---------------------------------------------------------------

TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def sums() -> Task:
    return Task([Sample(input=f"{i}+{i}?", target="4", id=i) for i in range(2)], scorer=match())
"""


async def gauge_eval(tmp_path: Path, *args: str) -> tuple[int, str, list[dict[str, Any]]]:
    """Run `gauge eval task.py ARGS` in process (in a thread: the CLI runs its own loop)."""
    (tmp_path / "task.py").write_text(TASK)
    argv = ["eval", str(tmp_path / "task.py"), *args, "--log-dir", str(tmp_path / "logs")]

    def run() -> int:
        try:
            main([*argv, "--no-display"])
        except SystemExit as ex:
            return int(ex.code or 0)
        return 0

    code = await asyncio.to_thread(run)
    journals = sorted((tmp_path / "logs").glob("*.jsonl"))
    lines = [orjson.loads(x) for x in journals[0].read_bytes().splitlines()] if journals else []
    return code, str(journals[0]) if journals else "", lines


async def test_local_completions_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # lm-eval run --model local-completions
    #   --model_args model=my-model,base_url=http://localhost:8000/v1/completions,num_concurrent=10
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # local-completions reads it, as lm-eval does
    async with AuthServer(KEY) as server:
        args = f"model=my-model,base_url={server.url}/completions,num_concurrent=10"
        code, journal, lines = await gauge_eval(
            tmp_path, "--model", "local-completions", "--model_args", args
        )
    assert code == 0, capsys.readouterr().err
    assert [s.path for s in server.seen] == ["/v1/completions"] * 2
    assert all(s.headers["authorization"] == f"Bearer {KEY}" for s in server.seen)
    assert sorted(b["prompt"] for b in server.bodies) == ["0+0?", "1+1?"]
    assert {b["model"] for b in server.bodies} == {"my-model"}
    header = lines[0]
    assert header["model"]["name"] == "local-completions/my-model"
    assert header["model"]["base_url"] == server.url  # the endpoint's base
    assert header["model_args"] == {"num_concurrent": 10}
    assert journal.endswith(".jsonl") and "_local-completions_my-model_" in journal


async def test_local_chat_completions_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # lm-eval run --model local-chat-completions
    #   --model_args model=my-model,base_url=http://localhost:8000/v1/chat/completions
    #   --apply_chat_template
    async with AuthServer(KEY) as server:
        args = f"model=my-model,base_url={server.url}/chat/completions,api_key={KEY}"
        code, _, lines = await gauge_eval(
            tmp_path, "--model", "local-chat-completions", "-M", args, "--apply_chat_template"
        )
    assert code == 0, capsys.readouterr().err
    assert [s.path for s in server.seen] == ["/v1/chat/completions"] * 2
    assert sorted(b["messages"][0]["content"] for b in server.bodies) == ["0+0?", "1+1?"]
    assert all("apply_chat_template" not in b and "api_key" not in b for b in server.bodies)
    assert lines[0]["model_args"] == {"api_key": "********", "apply_chat_template": True}


async def test_apply_chat_template_renders_the_tokenizers_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with AuthServer(None) as server:
        code, _, _ = await gauge_eval(
            tmp_path,
            "--model",
            "local-completions/tiny",
            "--model-base-url",
            f"{server.url}/completions",
            "-M",
            f"tokenizer={TINY}",
            "--apply_chat_template",
        )
    assert code == 0, capsys.readouterr().err
    from transformers import AutoTokenizer  # the reference renderer

    reference = AutoTokenizer.from_pretrained(str(TINY))
    expected = sorted(
        reference.apply_chat_template(
            [{"role": "user", "content": f"{i}+{i}?"}], tokenize=False, add_generation_prompt=True
        )
        for i in range(2)
    )
    assert sorted(b["prompt"] for b in server.bodies) == expected
    assert expected[0] == "<|user|>0+0?<|assistant|>"


async def test_a_chat_template_model_arg_from_a_file(tmp_path: Path) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    async with (
        AuthServer(None) as server,
        get_model("local-completions/m", base_url=server.url, chat_template=str(template)) as model,
    ):
        await model.generate("2+2?")
    assert server.bodies[0]["prompt"] == "[user] 2+2?\n[assistant] "


async def test_apply_chat_template_for_loglikelihood_wraps_the_context() -> None:
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(TINY / "tokenizer.json"))
    async with (
        AuthServer(None) as server,
        get_model(
            "local-completions/m",
            base_url=f"{server.url}/completions",
            tokenizer=str(TINY),
            apply_chat_template=True,
        ) as model,
    ):
        [(logprob, greedy)] = await model.loglikelihood([("2+2=", " 4")])
    [prompt] = server.bodies[0]["prompt"]  # a batch of one token-id prompt
    assert prompt == tok.encode("<|user|>2+2=<|assistant|> 4", add_special_tokens=False).ids
    answer = len(tok.encode(" 4", add_special_tokens=False).ids)
    assert (logprob, greedy) == (-0.5 * answer, True)


async def test_pretrained_names_the_model() -> None:
    async with (
        AuthServer(None) as server,
        get_model("local-completions", pretrained="my-model", base_url=server.url) as m,
    ):
        await m.generate("hi")
    assert server.bodies[0]["model"] == "my-model"
    assert m.name == "local-completions/my-model"


# -- -M spellings ----------------------------------------------------------------------------


def test_model_args_spellings() -> None:
    # lm-eval's comma-joined --model_args, Inspect's colon form, and values with commas.
    assert parse_model_args(
        [
            "model=x,base_url=http://h:8000/v1/completions,num_concurrent=10",
            "transport:grpc",
            "device=0,1,2,3",
            "stop_seqs=[a, b]",
        ]
    ) == {
        "model": "x",
        "base_url": "http://h:8000/v1/completions",
        "num_concurrent": 10,
        "transport": "grpc",
        "device": "0,1,2,3",
        "stop_seqs": ["a", "b"],
    }
    # An endpoint pool keeps its commas: the next piece is a URL, not name=.
    assert parse_model_args(["base_url=http://a:1/v1,http://b:2/v1"]) == {
        "base_url": "http://a:1/v1,http://b:2/v1"
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["foo"], "-M 'foo' must be name=value (or name:value; several as 'a=1,b=2')"),
        (["http://host/v1"], "-M 'http://host/v1' must be name=value"),
        (["n=1", "n=2"], "-M n is given twice with different values (1 and 2)"),
        (["api_key=sk-one", "api-key=sk-two"], "-M api_key is given twice with different values"),
    ],
)
def test_bad_model_args_are_one_line(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_args(items)
    assert str(info.value).startswith(message)
    assert "sk-one" not in str(info.value)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (
            "local-completions/m",
            {"base_url": "http://127.0.0.1:9/v1/chat/completions"},
            "base_url http://127.0.0.1:9/v1/chat/completions is a /chat/completions endpoint, "
            "but provider 'local-completions' posts to /completions; use --model "
            "local-chat-completions/<model>, or give the base URL (ending in /v1)",
        ),
        (
            "local-chat-completions/m",
            {"base_url": "http://127.0.0.1:9/v1/completions"},
            "base_url http://127.0.0.1:9/v1/completions is a /completions endpoint, "
            "but provider 'local-chat-completions' posts to /chat/completions; use --model "
            "local-completions/<model>, or give the base URL (ending in /v1)",
        ),
        (
            "local-completions/m",
            {},
            "provider 'local-completions' needs the server's URL: "
            "-M base_url=http://localhost:8000/v1/completions (or --model-base-url)",
        ),
        (
            "local-completions/m",
            {"base_url": "http://127.0.0.1:9/v1", "apply_chat_template": True},
            "--apply_chat_template needs a chat template: give -M chat_template=FILE "
            "(or the template text), or -M tokenizer=DIR with a local tokenizer that has one",
        ),
        (
            "local-completions/m",
            {"base_url": "http://127.0.0.1:9/v1", "apply_chat_template": "yes"},
            "-M apply_chat_template='yes' must be true or false",
        ),
        (
            "openai-api/svc/m",
            {"base_url": "http://127.0.0.1:9/v1", "chat_template": "{{ x }}"},
            "provider 'openai-api' does not take -M chat_template; remove it "
            "(providers that take it: local-completions)",
        ),
    ],
)
def test_lm_eval_argument_errors_are_one_line(
    model: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        get_model(model, memoize=False, **kwargs)
    assert str(info.value) == message


async def test_model_name_clashes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = await gauge_eval(tmp_path, "--model", "mock/x", "-M", "model=y")
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --model mock/x and -M model=y name two models; give the name once"
    )


async def test_eval_model_args_name_the_model_as_lm_eval_does(tmp_path: Path) -> None:
    # lm-eval's Python spelling: the model type as the model, its name in model_args.
    from gauge import Task, eval_async
    from gauge.dataset import Sample

    task = Task([Sample(input="4", target="4")], name="t")
    for args in ({"model": "echo"}, {"pretrained": "echo"}):
        [result] = await eval_async(task, "mock", model_args=args, log_dir=tmp_path, display=False)
        assert result.model == "mock/echo"
