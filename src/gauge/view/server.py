"""`gauge view --serve FOLDER`: the viewer of a log folder on 127.0.0.1, kept current.

    GET /         the viewer page of every journal in the folder now
    GET /version  a digest of the journals' names, sizes and mtimes

The page asks for /version every 2 seconds and reloads itself when it changed (the
view - tab, filters, open sample - is kept in the URL's hash). A page is rebuilt only
when asked for and the folder changed since the last one, on a worker thread, so a
large folder does not stall the server. A journal that cannot be read yet (a run
that has not written its header) is left out and named on the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gauge.errors import ConfigError
from gauge.evaluation.journal import JournalError, read_journal
from gauge.view.data import runs_of
from gauge.view.page import build_page


def folder_version(folder: Path) -> str:
    """A digest that changes whenever a journal in `folder` is added, grows or is rewritten."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        with contextlib.suppress(OSError):  # removed between the listing and the stat
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class LivePage:
    """The folder's page, rebuilt when the folder's version changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: tuple[str, str] | None = None
        self._lock = asyncio.Lock()

    def build(self, version: str) -> str:
        """The page of the folder as it is now (blocking: run it on a thread)."""
        journals, skipped = [], []
        for path in sorted(self.folder.glob("*.jsonl")):
            try:
                journals.append(read_journal(path))
            except JournalError as ex:
                skipped.append(f"{path.name}: {ex}")
        return build_page(runs_of(journals), live=version, notes=skipped)

    async def page(self) -> str:
        """The current page (built again only when the folder changed)."""
        async with self._lock:
            version = folder_version(self.folder)
            if self._built is None or self._built[0] != version:
                self._built = (version, await asyncio.to_thread(self.build, version))
            return self._built[1]


def make_app(folder: Path) -> web.Application:
    """The aiohttp application serving `folder`."""
    live = LivePage(folder)

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=await live.page(), content_type="text/html")

    async def version(_: web.Request) -> web.Response:
        return web.Response(text=folder_version(folder), headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/version", version)
    return app


async def start(folder: Path, port: int, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Start serving `folder`; returns the runner (await its cleanup()) and the URL."""
    runner = web.AppRunner(make_app(folder), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as ex:
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve on {host}:{port}: {ex.strerror}; pass another --port (0: any free one)"
        ) from None
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}/"


def serve_folder(folder: Path, port: int, say: Callable[[str], None]) -> None:
    """Serve `folder` until interrupted (Ctrl-C)."""

    async def main() -> None:
        runner, url = await start(folder, port)
        say(f"serving {folder} at {url} (Ctrl-C stops)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
