"""OpenAI-compatible providers: one fast wire client, many services.

chat.py         OpenAIChatAPI: POST /chat/completions and SSE streaming over
                the shared pooled aiohttp client (_http.py), no SDK
request.py      messages, tools and GenerateConfig -> request body
response.py     response body and SSE chunks -> ModelOutput
services.py     openai (+ Azure OpenAI), together, groq, grok, fireworks,
                deepseek, openrouter, cf, ollama, vllm (server), openai-api,
                azureai: env vars, base URLs and honoured fields
completions.py  POST /completions: openai-completions, openai-api-completions
"""
