"""Hugging Face's remote inference and llama.cpp's server, as OpenAI-compatible chat.

    hf-inference-providers/<org>/<model>[:<host>]
                      Hugging Face's Inference Providers router (HF_TOKEN);
                      base URL https://router.huggingface.co/v1
    tgi/<name>        a text-generation-inference server's Messages API, or a
                      Hugging Face Inference Endpoint running TGI (TGI_BASE_URL,
                      TGI_API_KEY); TGI serves one model and takes any name ("tgi")
    llama-cpp/<name>  llama.cpp's `llama-server` (LLAMA_CPP_BASE_URL, default
                      http://localhost:8080/v1; LLAMA_CPP_API_KEY for --api-key)

Each speaks OpenAI's /v1/chat/completions; what differs is data (env vars,
defaults, honoured fields) and llama.cpp's wire details: its server reports
`timings` (and older builds no `usage`), kept in `output.metadata["timings"]`
and used for usage when `usage` is absent; GenerateConfig's `cache_prompt`
is sent as its `cache_prompt` field (keep the prompt's KV cache between requests).
"""

from __future__ import annotations

from typing import Any

from gauge.model.config import GenerateConfig
from gauge.model.messages import ChatMessage
from gauge.model.output import ModelOutput, ModelUsage
from gauge.model.providers.openai_compat.chat import CHAT_FIELDS, OpenAIChatAPI
from gauge.model.providers.openai_compat.response import chat_output
from gauge.model.tools import ToolChoice, ToolInfo

HF_ROUTER_URL = "https://router.huggingface.co/v1"


class HFInferenceProvidersAPI(OpenAIChatAPI):
    """Hugging Face Inference Providers: one token, many hosts, OpenAI's chat wire format."""

    needs_api_key = True
    api_key_vars = ("HF_TOKEN",)
    base_url_vars = ("HF_INFERENCE_PROVIDERS_BASE_URL",)
    default_base_url = HF_ROUTER_URL
    honours = CHAT_FIELDS - {"parallel_tool_calls"} | {"logprobs", "top_logprobs"}


class TGIAPI(OpenAIChatAPI):
    """text-generation-inference's Messages API (TGI >= 1.4)."""

    api_key_vars = ("TGI_API_KEY",)
    base_url_vars = ("TGI_BASE_URL",)
    default_base_url = "http://localhost:8080/v1"
    # TGI returns one choice per request (no `n`) and has no parallel tool calls.
    honours = CHAT_FIELDS - {"parallel_tool_calls"} | {"logprobs", "top_logprobs"}


class LlamaCppAPI(OpenAIChatAPI):
    """llama.cpp's `llama-server` (one loaded model; the request's model name is a label)."""

    api_key_vars = ("LLAMA_CPP_API_KEY",)
    base_url_vars = ("LLAMA_CPP_BASE_URL",)
    default_base_url = "http://localhost:8080/v1"
    honours = CHAT_FIELDS - {"parallel_tool_calls"} | {
        "top_k",
        "logprobs",
        "top_logprobs",
        "cache_prompt",
    }

    def body(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> dict[str, Any]:
        body = super().body(input, tools, tool_choice, config)
        if config.cache_prompt is not None:  # llama-server's own field of the same name
            body["cache_prompt"] = config.cache_prompt is not False
        return body

    def output(self, data: Any) -> ModelOutput:
        output = chat_output(data, self.model_name)
        timings = data.get("timings") if isinstance(data, dict) else None
        if isinstance(timings, dict):
            output.metadata = {**(output.metadata or {}), "timings": timings}
            if output.usage is None and "prompt_n" in timings and "predicted_n" in timings:
                prompt, predicted = int(timings["prompt_n"]), int(timings["predicted_n"])
                output.usage = ModelUsage(
                    input_tokens=prompt, output_tokens=predicted, total_tokens=prompt + predicted
                )
        return output
