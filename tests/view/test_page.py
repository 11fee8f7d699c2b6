"""The page as a file: text that looks like HTML cannot break out of its script tags."""

import json
import re
from pathlib import Path

import orjson

from gauge.view.data import load_runs
from gauge.view.page import DETAIL_CHUNK, build_page, pack

NASTY = "</script><!--<script>alert(1)</script>"


def test_names_and_texts_stay_inside_their_scripts(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    lines = [
        {"type": "header", "task": {"name": NASTY}, "model": {"name": "m/<b>"}},
        *({"type": "sample", "id": i, "epoch": 1, "input": NASTY} for i in range(DETAIL_CHUNK + 1)),
    ]
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    page = build_page(load_runs([path]))
    # meta + rows + two transcript chunks + the viewer script: nothing else opens or closes one
    assert page.count("<script") == page.count("</script>") == 5
    meta = re.search(r'id="gauge-meta">(.*?)</script>', page, re.S)
    assert meta is not None and "<" not in meta.group(1)
    assert json.loads(meta.group(1))["runs"][0]["label"] == f"{NASTY} · m/<b>"
    assert "<td>m/&lt;b&gt;</td>" in page and "alert(1)</script>" not in page


def test_pack_is_gzip_json_in_base64() -> None:
    import base64
    import gzip

    value = [{"id": 1, "in": "é ✓"}]
    assert json.loads(gzip.decompress(base64.b64decode(pack(value)))) == value
    assert pack(value) == pack(value)  # no timestamp in the gzip header: same page, same bytes
