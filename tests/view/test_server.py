"""`gauge view --serve`: a log folder on 127.0.0.1, rebuilt as runs write."""

import re
from pathlib import Path

import aiohttp

from gauge.testing.journals import write_run
from gauge.view.server import folder_version, start


async def test_served_page_follows_the_folder(tmp_path: Path) -> None:
    write_run(tmp_path, "m/first", 5)
    runner, url = await start(tmp_path, 0)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as res:
                assert res.status == 200 and res.content_type == "text/html"
                page = await res.text()
            async with http.get(url + "version") as res:
                version = await res.text()
                assert res.headers["Cache-Control"] == "no-store"
            assert version == folder_version(tmp_path)
            assert f'"live":"{version}"' in page and "1 run(s)" in page and "m/first" in page

            # A second run starts: its header is not written yet, then it is.
            (tmp_path / "started.jsonl").write_bytes(b"")
            async with http.get(url + "version") as res:
                assert await res.text() != version
            async with http.get(url) as res:
                page = await res.text()
            assert "1 run(s)" in page
            assert "started.jsonl: " in page and "empty journal" in page  # named, not fatal
            write_run(tmp_path, "m/second", 7)
            async with http.get(url) as res:
                page = await res.text()
            assert "2 run(s)" in page and "m/second" in page and "12 samples" in page
    finally:
        await runner.cleanup()
    async with aiohttp.ClientSession() as http:  # stopped: nothing listens any more
        try:
            await http.get(url)
        except aiohttp.ClientConnectorError:
            pass
        else:  # pragma: no cover
            raise AssertionError("the server still answers after cleanup")


def test_version_changes_when_a_journal_grows(tmp_path: Path) -> None:
    assert folder_version(tmp_path) == folder_version(tmp_path)
    empty = folder_version(tmp_path)
    path = write_run(tmp_path, "m/a", 3)
    grown = folder_version(tmp_path)
    assert grown != empty
    with open(path, "ab") as file:
        file.write(b'{"type":"sample","id":99,"epoch":1}\n')
    assert folder_version(tmp_path) != grown
