"""The cache key: what goes into it, what stays out, and how explain compares keys."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from gauge.model.cache.key import (
    CacheKey,
    compare,
    digest_of,
    message_material,
    model_material,
    public_url,
    request_key,
)
from gauge.model.cache.policy import CachePolicy, cache_epoch
from gauge.model.config import GenerateConfig
from gauge.model.content import ContentText
from gauge.model.messages import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
)
from gauge.model.tools import ToolCall, ToolFunction, ToolInfo

POLICY = CachePolicy()


def key(
    messages: list[ChatMessage] | None = None,
    config: GenerateConfig | None = None,
    policy: CachePolicy = POLICY,
    base_url: str | None = "https://api.example.com/v1",
    tools: list[ToolInfo] | None = None,
    tool_choice: object = "none",
    epoch: int | None = None,
    model: str = "gpt-x",
) -> CacheKey:
    return request_key(
        "openai",
        model,
        base_url,
        messages if messages is not None else [ChatMessageUser(content="What is 2+2?")],
        tools or [],
        tool_choice,  # type: ignore[arg-type]
        config or GenerateConfig(),
        policy,
        epoch=epoch,
    )


def test_key_is_sha256_of_canonical_json_of_the_components() -> None:
    k = key(config=GenerateConfig(temperature=0.5))
    components = {name: orjson.loads(value) for name, value in k.components.items()}
    canonical = orjson.dumps(components, option=orjson.OPT_SORT_KEYS)
    assert k.digest == hashlib.sha256(canonical).digest()
    assert len(k.hex) == 64
    assert components["config.temperature"] == 0.5
    assert components["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert components["provider"] == "openai" and components["model"] == "gpt-x"
    assert components["epoch"] == 0 and components["scopes"] == {}
    assert components["schema"] == 1
    assert k.model == "openai/gpt-x"


def test_same_request_same_key_and_message_ids_do_not_matter() -> None:
    a = key([ChatMessageUser(content="hi", id="a1", source="input", metadata={"x": 1})])
    b = key([ChatMessageUser(content="hi", id="zz")])
    assert a.digest == b.digest


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [ChatMessageUser(content="What is 2+3?")]},
        {"config": GenerateConfig(temperature=0.7)},
        {"config": GenerateConfig(max_tokens=5)},
        {"config": GenerateConfig(seed=1)},
        {"config": GenerateConfig(stop_seqs=["\n"])},
        {"config": GenerateConfig(extra_body={"top_a": 1})},
        {"config": GenerateConfig(extra_headers={"x-variant": "b"})},
        {"base_url": "https://other.example.com/v1"},
        {"tools": [ToolInfo(name="calc")]},
        {"tool_choice": ToolFunction(name="calc")},
        {"epoch": 2},
        {"policy": CachePolicy(scopes={"role": "grader"})},
        {"model": "gpt-y"},
    ],
)
def test_result_changing_inputs_change_the_key(change: dict[str, object]) -> None:
    assert key(**change).digest != key().digest  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [
        GenerateConfig(timeout=5),
        GenerateConfig(attempt_timeout=1),
        GenerateConfig(max_retries=0),
        GenerateConfig(max_connections=3),
        GenerateConfig(drop_unsupported=True),
        GenerateConfig(cache_prompt=True),
        GenerateConfig(cache="1D"),
        GenerateConfig(reasoning_history="none"),
        GenerateConfig(temperature=None),
        GenerateConfig(extra_headers={"Authorization": "Bearer sk-secret"}),
    ],
)
def test_timeouts_retries_connections_and_secrets_leave_the_key_alone(
    config: GenerateConfig,
) -> None:
    assert key(config=config).digest == key().digest


def test_expiry_is_not_part_of_the_key() -> None:
    assert (
        key(policy=CachePolicy(expiry="1D")).digest == key(policy=CachePolicy(expiry="1W")).digest
    )
    assert key(policy=CachePolicy(expiry=None)).digest == key().digest


def test_epoch_comes_from_the_context_var_unless_per_epoch_is_off() -> None:
    token = cache_epoch.set(3)
    try:
        assert key().digest == key(epoch=3).digest
        assert key().digest != key(epoch=0).digest
    finally:
        cache_epoch.reset(token)
    flat = CachePolicy(per_epoch=False)
    assert key(policy=flat, epoch=1).digest == key(policy=flat, epoch=7).digest
    assert "epoch" not in key(policy=flat).components


def test_auth_headers_and_url_credentials_never_enter_the_key_material() -> None:
    config = GenerateConfig(
        extra_headers={
            "Authorization": "Bearer sk-live-1",
            "x-api-key": "sk-live-2",
            "Cookie": "session=sk-live-3",
            "x-variant": "b",
        }
    )
    k = key(
        config=config, base_url="https://user:sk-live-4@api.example.com/v1/?api_key=sk-live-5&v=2"
    )
    material = b"".join(k.components.values()) + orjson.dumps(k.fingerprint())
    for secret in (b"sk-live-1", b"sk-live-2", b"sk-live-3", b"sk-live-4", b"sk-live-5"):
        assert secret not in material
    assert orjson.loads(k.components["config.extra_headers"]) == {"x-variant": "b"}
    assert orjson.loads(k.components["base_url"]) == "https://api.example.com/v1?v=2"


def test_public_url() -> None:
    assert public_url(None) is None
    assert public_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert (
        public_url("https://u:p@h.example.com/x?token=t&model=a")
        == "https://h.example.com/x?model=a"
    )


def test_tool_call_ids_are_renumbered_so_fresh_ids_still_match() -> None:
    def conversation(call_id: str) -> list[ChatMessage]:
        return [
            ChatMessageSystem(content="Use the tool."),
            ChatMessageUser(content="2+2?"),
            ChatMessageAssistant(
                content="",
                tool_calls=[ToolCall(id=call_id, function="calc", arguments={"e": "2+2"})],
                model="m",
            ),
            ChatMessageTool(content="4", tool_call_id=call_id, function="calc"),
        ]

    first, second = conversation("call_8f2a"), conversation("toolu_01XYZ")
    assert key(first).digest == key(second).digest
    material = message_material(first)
    assert material[2]["tool_calls"][0]["id"] == "call_0"
    assert material[3]["tool_call_id"] == "call_0"
    # The link between a call and its result still counts.
    third = conversation("a")
    third[3] = ChatMessageTool(content="4", tool_call_id="other", function="calc")
    assert key(third).digest != key(first).digest


def test_compare_names_the_differing_components() -> None:
    stored = key(
        [ChatMessageSystem(content="Be brief."), ChatMessageUser(content="What is 2+2?")],
        config=GenerateConfig(temperature=0.0),
    )
    request = key(
        [ChatMessageSystem(content="Be brief."), ChatMessageUser(content="What is 2+3?")],
        config=GenerateConfig(temperature=0.7, seed=1),
    )
    equal, differences = compare(request.fingerprint(), stored.fingerprint())
    assert equal == len(stored.components) - 2
    assert differences == [
        "config.seed: set in the request (1), absent in the entry",
        "config.temperature: 0.7 in the request, 0.0 in the entry",
        'messages: message 2 differs: {"content":"What is 2+3?","role":"user"} in the request, '
        '{"content":"What is 2+2?","role":"user"} in the entry',
    ]


def test_long_components_are_fingerprinted_by_digest() -> None:
    long = key([ChatMessageUser(content="x" * 500)])
    other = key([ChatMessageUser(content="y" * 500)])
    fingerprint = long.fingerprint()
    assert fingerprint["messages"][0].startswith("sha256:")
    assert len(orjson.dumps(fingerprint)) < 400
    _, differences = compare(other.fingerprint(), fingerprint)
    assert differences == ["messages: message 1 differs"]


def test_result_changing_model_args_key_and_secrets_never_do() -> None:
    def with_args(**args: object) -> CacheKey:
        return request_key(
            "hf",
            "local",
            None,
            [ChatMessageUser(content="What is 2+2?")],
            [],
            "none",
            GenerateConfig(),
            POLICY,
            epoch=0,
            model_args=args,
        )

    plain = with_args()
    a, b = with_args(model_path="/models/a"), with_args(model_path="/models/b")
    assert len({plain.digest, a.digest, b.digest}) == 3
    assert orjson.loads(a.components["model_args"]) == {"model_path": "/models/a"}
    # Threads, batching and retries cannot change a result: same key as no args.
    assert with_args(threads=4, batch_size=8, num_concurrent=2).digest == plain.digest
    secret = with_args(
        model_path="/models/a",
        api_key="sk-canary-1",
        extra_header="X: sk-canary-2",
        base="http://user:sk-canary-3@host/v1",
    )
    stored = orjson.dumps(secret.fingerprint()) + b"".join(secret.components.values())
    assert b"sk-canary" not in stored
    assert orjson.loads(secret.components["model_args"]) == {
        "model_path": "/models/a",
        "base": "http://host/v1",
    }


def _golden_cases() -> dict[str, CacheKey]:
    user: list[ChatMessage] = [ChatMessageUser(content="What is 2+2?")]
    convo: list[ChatMessage] = [
        ChatMessageSystem(content="be brief"),
        ChatMessageUser(content="add 2 and 2"),
        ChatMessageAssistant(
            content="", tool_calls=[ToolCall(id="abc", function="add", arguments={"a": 2, "b": 2})]
        ),
        ChatMessageTool(content="4", tool_call_id="abc", function="add"),
    ]
    return {
        "plain": request_key(
            "openai",
            "gpt-x",
            "https://api.example.com/v1",
            user,
            [],
            "auto",
            GenerateConfig(),
            CachePolicy(),
        ),
        "mock-no-url": request_key(
            "mock", "cache", None, user, [], "auto", GenerateConfig(cache=True), CachePolicy(), 0
        ),
        "tools": request_key(
            "openai-api",
            "local/m",
            "https://user:pw@host.example:8443/v1/?api_key=s&x=1",
            convo,
            [ToolInfo(name="add", description="add numbers")],
            ToolFunction(name="add"),
            GenerateConfig(
                temperature=0.2,
                max_tokens=16,
                extra_headers={"X-Trace": "t", "Authorization": "b"},
                logit_bias={5: 1.0},
                timeout=9,
            ),
            CachePolicy(expiry=None, scopes={"role": "grader"}),
            epoch=3,
            model_args={
                "tokenizer": "gpt2",
                "api_key": "k",
                "threads": 4,
                "path": "http://u:p@h/x",
            },
        ),
        "no-epoch": request_key(
            "hf",
            "local",
            None,
            user,
            [],
            "none",
            GenerateConfig(seed=1),
            CachePolicy(per_epoch=False),
            model_args={"max_length": 128},
        ),
    }


def test_keys_stay_what_earlier_versions_stored() -> None:
    # Digests computed by the key code before hits were made cheap (per-model parts
    # cached, one-call digest): existing cache files must keep hitting.
    golden = {
        "plain": "cfb8192d1b176d898438dad75322072968c8a17df996c9b2f8de53ae91e0f85a",
        "mock-no-url": "605a588de3e8ae2999e6c0fdaf95c6f0573a11beedbef265cad11c287dd66f38",
        "tools": "06e0022296ac720b99c96f69ea8733447e9d6c47c419b79b58595d47c4095025",
        "no-epoch": "ee0eb87fcf46d41cc164b589ab37fc5c2b4b8cb93c76f06e244b3ac9c3dfc0ce",
    }
    assert {name: k.hex for name, k in _golden_cases().items()} == golden


@pytest.mark.parametrize("name", ["plain", "mock-no-url", "tools", "no-epoch"])
def test_the_digest_is_the_canonical_json_of_the_components(name: str) -> None:
    k = _golden_cases()[name]
    components = {n: orjson.loads(v) for n, v in k.components.items()}
    canonical = orjson.dumps(components, option=orjson.OPT_SORT_KEYS)
    assert k.digest == hashlib.sha256(canonical).digest() == digest_of(k.components)


def test_shared_model_parts_give_the_same_key() -> None:
    args = {"tokenizer": "gpt2", "api_key": "k"}
    parts = model_material("hf", "local", "http://h/v1", args)
    made = [
        request_key(
            "hf",
            "local",
            "http://h/v1",
            [ChatMessageUser(content=text)],
            [],
            "auto",
            GenerateConfig(temperature=0.1),
            POLICY,
            epoch=1,
            model_args=args,
            model_parts=shared,
        )
        for text in ("a", "b")
        for shared in (None, parts)
    ]
    assert made[0].digest == made[1].digest != made[2].digest == made[3].digest
    assert made[0].components == made[1].components


@pytest.mark.parametrize(
    "message",
    [
        ChatMessageUser(content="hi"),
        ChatMessageUser(content="", id="x", source="input", metadata={"a": 1}),
        ChatMessageUser(content="tool image", tool_call_id=["c1"]),
        ChatMessageUser(content=[ContentText(text="part")]),
        ChatMessageSystem(content="sys"),
        ChatMessageAssistant(content="ok", model="m", source="generate"),
        ChatMessageAssistant(  # an id the renumbering leaves as it is
            content="", tool_calls=[ToolCall(id="call_0", function="f", arguments={})]
        ),
        ChatMessageTool(content="4"),
        ChatMessageTool(content="4", tool_call_id="c1", function="f"),
    ],
)
def test_plain_messages_enter_the_key_as_model_dump_gives_them(message: ChatMessage) -> None:
    dumped = message.model_dump(
        mode="json", exclude={"id", "source", "metadata", "model"}, exclude_none=True
    )
    assert message_material([message]) == [dumped]
