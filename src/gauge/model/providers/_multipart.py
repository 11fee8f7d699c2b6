"""A multipart/form-data body, built as bytes (file uploads to a provider's Files API).

aiohttp can build one too, but only inside its own request: batch translators
build the body here and send it over the shared client (`_files.post_bytes`),
so an upload travels the same way, proxy and errors included, as every call.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping


def multipart_body(
    fields: Mapping[str, str],
    file_field: str,
    filename: str,
    content: bytes,
    content_type: str = "application/jsonl",
) -> tuple[bytes, str]:
    """(body, Content-Type header) for `fields` plus one file part holding `content`."""
    boundary = f"gauge-{secrets.token_hex(16)}"
    dash = f"--{boundary}".encode()
    parts: list[bytes] = []
    for name, value in fields.items():
        parts += [
            dash,
            f'Content-Disposition: form-data; name="{_quoted(name)}"'.encode(),
            b"",
            value.encode(),
        ]
    parts += [
        dash,
        (
            f'Content-Disposition: form-data; name="{_quoted(file_field)}"; '
            f'filename="{_quoted(filename)}"'
        ).encode(),
        f"Content-Type: {content_type}".encode(),
        b"",
        content,
        dash + b"--",
        b"",
    ]
    return b"\r\n".join(parts), f"multipart/form-data; boundary={boundary}"


def _quoted(text: str) -> str:
    # A quote or line break would end the header early (RFC 7578 percent-encodes them).
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
