"""`gauge serve`: a local model behind OpenAI's wire format.

    cli/serve.py ──► settings.Settings ──► engines.build_engine ──► app.build_app ──► uvicorn
                                                                     │
              POST /v1/chat/completions, /v1/completions ──► schemas.parse_* ──► engine
              GET /v1/models, /health, /metrics

* `schemas` turns a request body into an `EngineRequest`, or an `APIError`
  (OpenAI's error shape, HTTP 400, naming the field); a field the engine cannot
  honour is refused, never dropped.
* `engines` hold the model: `transformers` (the hf provider's batching engine),
  `vllm` (import-guarded), `mock` (for load tests).
* `batch_api` adds OpenAI's Files and Batch routes: `files` stores uploads and
  outputs on disk, `batches` holds the batch objects, `batch_run` answers each
  line through the same `Server.complete` as the real-time routes.
* `worker` is the RunPod serverless handler over the same engines.
"""
