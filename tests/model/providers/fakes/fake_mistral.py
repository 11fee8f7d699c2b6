"""A fake Mistral chat completions API on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from fake_anthropic import FakeServer, Recorded, Reply


def completion(
    content: Any = "Hello!",
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, int] | None = None,
    model: str = "mistral-test",
) -> dict[str, Any]:
    """A chat completion body with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": model,
        "created": 1700000000,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }


def chunk(text: str, finish_reason: str | None = None) -> dict[str, Any]:
    """One streamed chunk."""
    return {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "model": "mistral-test",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}],
    }


class FakeMistral(FakeServer):
    """Answers POST .../chat/completions with "Hello!" unless a reply is queued."""

    def default(self, recorded: Recorded) -> Reply:
        if not recorded.path.endswith("/chat/completions"):
            return Reply(404, {"object": "error", "message": "Not found", "type": "not_found"})
        if recorded.body.get("stream"):
            return Reply(events=[chunk("Hel"), chunk("lo!", "stop"), "[DONE]"])
        return Reply(body=completion(model=recorded.body["model"]))
