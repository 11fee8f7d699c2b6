"""The multipart body batch uploads send, read back by the standard library's parser."""

from __future__ import annotations

from gauge.model.providers._multipart import multipart_body
from gauge.testing.batch_fakes._base import form_fields


def test_fields_and_file_come_back_byte_for_byte() -> None:
    content = b'{"custom_id": "a"}\r\n{"custom_id": "b"}\n\xc3\xa9\n'
    body, content_type = multipart_body({"purpose": "batch"}, "file", "batch.jsonl", content)
    assert content_type.startswith("multipart/form-data; boundary=gauge-")
    assert form_fields(content_type, body) == {
        "purpose": (b"batch", None),
        "file": (content, "batch.jsonl"),
    }


def test_quotes_and_line_breaks_in_names_cannot_end_the_header() -> None:
    body, content_type = multipart_body({}, "file", 'a"b\r\nX-Evil: 1.jsonl', b"x")
    assert b"X-Evil: 1" not in body.split(b"\r\n")
    assert form_fields(content_type, body) == {"file": (b"x", "a%22b%0D%0AX-Evil: 1.jsonl")}


def test_each_body_has_its_own_boundary() -> None:
    first = multipart_body({}, "file", "a", b"x")[1]
    second = multipart_body({}, "file", "a", b"x")[1]
    assert first != second
