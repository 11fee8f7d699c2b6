"""A fake Gemini API / Vertex AI / OAuth token endpoint on 127.0.0.1.

`POST .../models/<model>:generateContent` answers "Hello!" unless a reply is
queued; `POST /token` verifies the service-account JWT with the public key the
test generated (so google-auth's real signing is checked) and hands out a token.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from fake_anthropic import FakeServer, Recorded, Reply

ACCESS_TOKEN = "ya29.fake-vertex-token"


def response(
    text: str | list[dict[str, Any]] = "Hello!",
    finish_reason: str = "STOP",
    usage: dict[str, int] | None = None,
    **candidate: Any,
) -> dict[str, Any]:
    """A GenerateContentResponse with one candidate."""
    parts = [{"text": text}] if isinstance(text, str) else text
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": finish_reason,
                "index": 0,
                **candidate,
            }
        ],
        "usageMetadata": usage
        or {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10},
        "modelVersion": "gemini-test-001",
    }


class FakeGoogle(FakeServer):
    """Gemini/Vertex generateContent plus an OAuth2 token endpoint at /token."""

    def __init__(self) -> None:
        super().__init__()
        self.public_pem: bytes | None = None
        self.token_claims: list[dict[str, Any]] = []

    def default(self, recorded: Recorded) -> Reply:
        if recorded.path == "/token":
            return self._token(recorded)
        if recorded.path.endswith(":generateContent"):
            return Reply(body=response())
        if recorded.path.endswith(":streamGenerateContent"):
            return Reply(events=[response("Hel"), response("lo!")])
        return Reply(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    def _token(self, recorded: Recorded) -> Reply:
        from google.auth import jwt

        form = urllib.parse.parse_qs(recorded.body)
        assertion = form["assertion"][0]
        # google.auth.default() signs for Google's own token URI, a key file for its token_uri.
        audiences = [f"{self.url}/token", "https://oauth2.googleapis.com/token"]
        claims = jwt.decode(assertion, certs=self.public_pem, audience=audiences)
        self.token_claims.append(claims)
        return Reply(
            body={"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        )
