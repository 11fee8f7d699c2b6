"""A fake chat-completions server on 127.0.0.1 in a thread, for tests that call gauge's
blocking facade (an aiohttp server on the test's own loop would wait on that call).

    with WireServer(reply=tgi_reply) as server:   # server.url ends with /v1
        ...
        server.seen                                # every request: path, headers, JSON body

`reply(body)` builds the JSON answer to one POST /v1/chat/completions; a request
with `"stream": true` gets that answer as OpenAI's SSE chunks (the text in one
delta, then the finish reason, then usage when the answer has it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Seen:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def openai_reply(text: str, model: str, **extra: Any) -> dict[str, Any]:
    """A chat completion answering `text`, with usage; `extra` adds top-level fields."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        **extra,
    }


class WireServer:
    """The server (see module doc); use as a context manager."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.seen.append(Seen(self.path, dict(self.headers.items()), body))
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                answer = server.reply(body)
                if body.get("stream"):
                    self._stream(answer)
                else:
                    self._send(200, answer)

            def _send(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, answer: dict[str, Any]) -> None:
                base = {k: answer[k] for k in ("id", "created", "model")}
                base["object"] = "chat.completion.chunk"
                choice = answer["choices"][0]
                text = choice["message"]["content"]
                chunks = [
                    {**base, "choices": [{"index": 0, "delta": {"content": text}}]},
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
                        ],
                    },
                ]
                if answer.get("usage"):
                    chunks.append({**base, "choices": [], "usage": answer["usage"]})
                raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
                raw += b"data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass  # quiet test output

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL, ending with /v1."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> WireServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
