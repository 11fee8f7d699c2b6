"""A Gemini `GenerateContentResponse` (or stream chunk) -> gauge types."""

from __future__ import annotations

from typing import Any

from gauge.model.content import Content, ContentReasoning, ContentText
from gauge.model.messages import ChatMessageAssistant
from gauge.model.output import (
    ChatCompletionChoice,
    Logprob,
    Logprobs,
    ModelOutput,
    ModelUsage,
    StopReason,
    TopLogprob,
)
from gauge.model.providers.google.errors import GoogleResponseError
from gauge.model.tools import ToolCall

FILTER_REASONS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}
)
STOP_REASONS: dict[str, StopReason] = {"STOP": "stop", "MAX_TOKENS": "max_tokens"}


def parse_response(body: Any, model: str) -> ModelOutput:
    """The ModelOutput for a non-streaming response body."""
    if not isinstance(body, dict):
        raise GoogleResponseError("INTERNAL", f"unexpected response body: {str(body)[:200]}")
    if "error" in body:
        raise GoogleResponseError.from_body(body)
    name = body.get("modelVersion") or model
    usage = parse_usage(body.get("usageMetadata"))
    feedback = body.get("promptFeedback") or {}
    candidates = body.get("candidates") or []
    if not candidates and feedback.get("blockReason"):
        reason = feedback["blockReason"]
        categories = _blocked_categories(feedback.get("safetyRatings"))
        output = ModelOutput.from_content(name, "", "content_filter")
        output.error = f"prompt blocked by the provider's filter: {_describe(reason, categories)}"
        output.metadata = {"block_reason": reason, "categories": categories}
        output.usage = usage
        return output
    choices = []
    errors: list[str] = []
    filtered: list[dict[str, Any]] = []
    for candidate in candidates:
        choice = parse_candidate(candidate, name)
        if choice.stop_reason == "content_filter":
            reason = candidate.get("finishReason", "SAFETY")
            categories = _blocked_categories(candidate.get("safetyRatings"))
            errors.append(_describe(reason, categories))
            filtered.append({"finish_reason": reason, "categories": categories})
        choices.append(choice)
    output = ModelOutput(model=name, choices=choices, usage=usage)
    if errors:
        output.error = f"response blocked by the provider's filter: {'; '.join(errors)}"
        output.metadata = {"content_filter": filtered}
    return output


def parse_candidate(candidate: dict[str, Any], model: str) -> ChatCompletionChoice:
    """One candidate -> one choice (text, signed thoughts, function calls, logprobs)."""
    content: list[Content] = []
    calls: list[ToolCall] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        signature = part.get("thoughtSignature")
        if part.get("thought"):
            content.append(ContentReasoning(reasoning=part.get("text", ""), signature=signature))
            continue
        if signature:
            content.append(ContentReasoning(reasoning="", signature=signature, redacted=True))
        if "functionCall" in part:
            call = part["functionCall"]
            calls.append(
                ToolCall(
                    id=call.get("id") or f"{call['name']}_{len(calls)}",
                    function=call["name"],
                    arguments=call.get("args") or {},
                )
            )
        elif "text" in part:
            content.append(ContentText(text=part["text"]))
    reason = candidate.get("finishReason") or ""
    stop: StopReason
    if reason in FILTER_REASONS:
        stop = "content_filter"
    elif calls and reason in ("STOP", ""):
        stop = "tool_calls"
    else:
        stop = STOP_REASONS.get(reason, "unknown")
    message = ChatMessageAssistant(
        content=content, tool_calls=calls or None, model=model, source="generate"
    )
    return ChatCompletionChoice(
        message=message, stop_reason=stop, logprobs=parse_logprobs(candidate.get("logprobsResult"))
    )


def parse_logprobs(result: Any) -> Logprobs | None:
    """Per-token logprobs with the top alternatives, when the response has them."""
    if not isinstance(result, dict) or not result.get("chosenCandidates"):
        return None
    tops = result.get("topCandidates") or []
    tokens = []
    for i, chosen in enumerate(result["chosenCandidates"]):
        alternatives = tops[i].get("candidates", []) if i < len(tops) else []
        tokens.append(
            Logprob(
                token=chosen.get("token", ""),
                logprob=chosen.get("logProbability", 0.0),
                top_logprobs=[
                    TopLogprob(token=a.get("token", ""), logprob=a.get("logProbability", 0.0))
                    for a in alternatives
                ]
                or None,
            )
        )
    return Logprobs(content=tokens)


def parse_usage(meta: Any) -> ModelUsage | None:
    """Token usage; output tokens include thinking, which is also reported alone."""
    if not isinstance(meta, dict):
        return None
    prompt = int(meta.get("promptTokenCount") or 0)
    thoughts = meta.get("thoughtsTokenCount")
    output = int(meta.get("candidatesTokenCount") or 0) + int(thoughts or 0)
    return ModelUsage(
        input_tokens=prompt,
        output_tokens=output,
        total_tokens=int(meta.get("totalTokenCount") or prompt + output),
        input_tokens_cache_read=meta.get("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def stream_text(chunk: Any) -> str:
    """The answer text in one stream chunk (thoughts left out); raises on an error chunk."""
    if isinstance(chunk, dict) and "error" in chunk:
        raise GoogleResponseError.from_body(chunk)
    if not isinstance(chunk, dict):
        raise GoogleResponseError("INTERNAL", f"unexpected stream chunk: {str(chunk)[:200]}")
    candidates = chunk.get("candidates") or ()
    if not candidates:
        return ""
    parts = (candidates[0].get("content") or {}).get("parts") or ()
    return "".join(p.get("text", "") for p in parts if not p.get("thought"))


def _blocked_categories(ratings: Any) -> list[str]:
    return [r["category"] for r in ratings or () if r.get("blocked") and "category" in r]


def _describe(reason: str, categories: list[str]) -> str:
    return f"{reason} ({', '.join(categories)})" if categories else reason
