"""Credentials given as model args (-M) never reach a request body, and authenticate.

Inspect AI's docs show `-M api-key=<key>` for a vLLM server; lm-eval users write
`api_key=` in --model_args. Every spelling that names the key authenticates
against a fake server on 127.0.0.1 that demands it; every other credential-like
name is a one-line error before any request; none is ever sent as a JSON field,
written to the journal or shown in a repr.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from auth_server import AuthServer

from gauge.cli.main import main
from gauge.cli.model_args import parse_model_args
from gauge.errors import ConfigError
from gauge.model import get_model
from gauge.model.credentials import (
    canonical,
    is_credential_arg,
    is_secret_name,
    names_the_key,
    normalise_model_args,
    split_credentials,
)
from gauge.model.providers._http import HTTPStatusError

KEY = "sk-canary-7f3a9c21"

KEY_SPELLINGS = [
    "api-key",
    "api_key",
    "apiKey",
    "API_KEY",
    "Api-Key",
    "apikey",
    "key",
    "token",
    "api_token",
    "access_token",
    "access-token",
    "auth_token",
    "authToken",
    "bearer",
    "bearer_token",
    "openai_api_key",
]
"""Names that mean the provider's API key: each becomes the key."""

OTHER_CREDENTIALS = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "secret_key",
    "aws_secret_access_key",
    "authorization",
    "Authorization",
    "auth",
    "cookie",
    "credentials",
    "x-auth-header",
    "session_token" + "s",  # "session_tokens" is not a credential: checked below
]

PROVIDERS = [
    # (provider/model, the path the request goes to)
    ("openai/meta-llama/Meta-Llama-3-8B-Instruct", "/v1/chat/completions"),  # Inspect's example
    ("openai-api/local/m", "/v1/chat/completions"),
    ("local-chat-completions/m", "/v1/chat/completions"),
    ("local-completions/m", "/v1/completions"),
    ("vllm/m", "/v1/chat/completions"),
]


@pytest.mark.parametrize("spelling", KEY_SPELLINGS)
@pytest.mark.parametrize(("model", "path"), PROVIDERS)
async def test_every_key_spelling_authenticates_and_stays_out_of_the_body(
    spelling: str, model: str, path: str
) -> None:
    async with (
        AuthServer(KEY) as server,
        get_model(model, base_url=server.url, **{spelling: KEY}) as built,
    ):
        output = await built.generate("2+2?")
    assert output.completion == "4"
    assert server.rejected == 0
    [seen] = server.seen
    assert seen.path == path
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert KEY.encode() not in seen.raw  # not under any name, not in any value
    assert not any(is_secret_name(name) for name in seen.body)


async def test_the_model_arg_key_wins_over_the_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-wrong-key")
    async with AuthServer(KEY) as server:
        async with get_model("local-completions/m", base_url=server.url, **{"api-key": KEY}) as m:
            assert (await m.generate("hi")).completion == "4"
        # Without the model arg the env key is sent, and this server refuses it.
        async with get_model("local-completions/m", base_url=server.url) as m:
            with pytest.raises(HTTPStatusError) as info:
                await m.generate("hi")
    assert info.value.status == 401
    assert [s.headers["authorization"] for s in server.seen] == [
        f"Bearer {KEY}",
        "Bearer sk-env-wrong-key",
    ]


@pytest.mark.parametrize("spelling", OTHER_CREDENTIALS[:-1])
async def test_a_credential_that_is_not_the_key_is_refused_before_any_request(
    spelling: str,
) -> None:
    async with AuthServer(KEY) as server:
        with pytest.raises(ConfigError) as info:
            get_model("openai-api/local/m", base_url=server.url, **{spelling: KEY})
    message = str(info.value)
    assert "\n" not in message
    assert f"-M {spelling.replace('-', '_')} is a credential provider 'openai-api'" in message
    assert "never sends credentials in a request body" in message
    assert KEY not in message
    assert server.seen == []


async def test_names_that_only_look_alike_still_go_to_the_body() -> None:
    # vLLM's stop_token_ids, special tokens, counts and OpenAI's prompt_cache_key are
    # not credentials: passed on as before (from the command line too).
    args = parse_model_args(
        ["stop_token_ids=[1, 2],session_tokens=3", "prompt_cache_key=evals-1", "pad_token=<p>"]
    )
    async with (
        AuthServer(KEY) as server,
        get_model("openai-api/local/m", base_url=server.url, api_key=KEY, **args) as m,
    ):
        await m.generate("hi")
    body = server.bodies[0]
    assert body["stop_token_ids"] == [1, 2]
    assert body["session_tokens"] == 3
    assert body["prompt_cache_key"] == "evals-1"
    assert body["pad_token"] == "<p>"


def test_a_provider_that_reads_a_credential_itself_keeps_it() -> None:
    # hf passes `token` to from_pretrained (the Hub token): it is not the API key.
    api_key, args = split_credentials(
        frozenset({"token", "device"}), "hf", None, {"token": "hf_abc", "device": "cpu"}, ()
    )
    assert api_key is None
    assert args == {"token": "hf_abc", "device": "cpu"}


def test_two_different_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="give two different API keys"):
        split_credentials(frozenset(), "vllm", "sk-one-key", {"api_key": "sk-two-key"}, ())
    with pytest.raises(ConfigError, match=r"^-M token and -M key give two different API keys"):
        split_credentials(frozenset(), "vllm", None, {"key": "sk-one", "token": "sk-two"}, ())
    # The same key twice is one key.
    assert split_credentials(frozenset(), "vllm", "sk-same", {"apiKey": "sk-same"}, ()) == (
        "sk-same",
        {},
    )


def test_an_empty_or_structured_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="-M api_key is empty"):
        split_credentials(frozenset(), "vllm", None, {"api_key": " "}, ())
    with pytest.raises(ConfigError, match="-M token must be the key as text, got dict"):
        split_credentials(frozenset(), "vllm", None, {"token": {"a": 1}}, ())


def test_names_are_normalised_as_inspect_does() -> None:
    assert normalise_model_args({"api-key": "k", "max-connections": 3}) == {
        "api_key": "k",
        "max_connections": 3,
    }
    with pytest.raises(ConfigError) as info:
        normalise_model_args({"api-key": "sk-aaaaaa", "api_key": "sk-bbbbbb"})
    assert "one model arg with different values (<hidden>)" in str(info.value)
    assert "sk-aaaaaa" not in str(info.value)
    assert [canonical(n) for n in ("apiKey", "API-KEY", "Api Key", "authToken")] == [
        "api_key",
        "api_key",
        "api_key",
        "auth_token",
    ]
    assert names_the_key("OPENAI_API_KEY")
    assert not names_the_key("password")
    assert not is_secret_name("max_tokens")
    assert not is_secret_name("tokenizer")
    for name in ("stop_token_ids", "prefix_token_id", "eos_token", "max_tokens", "tokenizer"):
        assert not is_credential_arg(name), name
    for name in [*KEY_SPELLINGS, *OTHER_CREDENTIALS[:-1]]:
        assert is_credential_arg(name), name


def test_cli_keys_stay_text() -> None:
    # YAML would read 0123 as a number; a key is the text given.
    args = parse_model_args(["api-key=0123456789", "num_concurrent=4", "token:  sk-x  "])
    assert args == {"api_key": "0123456789", "num_concurrent": 4, "token": "sk-x"}


TASK = """
from gauge import Task, task
from gauge.dataset import Sample
from gauge.scorer import match

@task
def sums() -> Task:
    return Task([Sample(input=f"{i}+{i}?", target="4", id=i) for i in range(3)], scorer=match())
"""


@pytest.mark.parametrize("spelling", ["api-key", "apiKey", "token", "auth_token"])
async def test_cli_key_authenticates_and_never_reaches_body_or_journal(
    spelling: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "task.py").write_text(TASK)
    async with AuthServer(KEY) as server:
        argv = [
            "eval",
            str(tmp_path / "task.py"),
            "--model",
            "openai/meta-llama/Meta-Llama-3-8B-Instruct",  # Inspect's vLLM-server line
            "--model-base-url",
            server.url,
            "-M",
            f"{spelling}={KEY}",
            "--log-dir",
            str(tmp_path / "logs"),
            "--no-display",
        ]
        code = await _main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert server.rejected == 0 and len(server.seen) == 3
    assert all(s.headers["authorization"] == f"Bearer {KEY}" for s in server.seen)
    assert all(KEY.encode() not in s.raw for s in server.seen)
    [journal] = list((tmp_path / "logs").glob("*.jsonl"))
    data = journal.read_bytes()
    assert KEY.encode() not in data
    header = orjson.loads(data.splitlines()[0])
    assert header["model_args"] == {spelling.replace("-", "_"): "********"}
    assert KEY not in out + err


async def _main(argv: list[str]) -> int:
    import asyncio

    def run() -> int:
        try:
            main(argv)
        except SystemExit as ex:
            return int(ex.code or 0)
        return 0

    # The CLI runs its own event loop: give it a thread while this loop serves.
    return await asyncio.to_thread(run)
