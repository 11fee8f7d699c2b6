"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), for page tests.

Debian's `chromium` is started with `--remote-debugging-port=0`; it prints the browser's
websocket address on stderr, and one page target is attached to it (flat sessions).
Commands are JSON messages over that websocket (aiohttp); console errors, uncaught
exceptions and failed loads are collected in `errors`, so a test can demand none.
Only what page tests need: open a URL, evaluate JavaScript, wait for a condition,
set the viewport and take a PNG screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
from pathlib import Path
from typing import Any

import aiohttp

INSTALL = "apt-get install -y chromium"


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a command failed."""


def chromium_path() -> str | None:
    """The Chromium executable on PATH, if any."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one page; use `async with await Browser.launch(...)`."""

    def __init__(self, process: asyncio.subprocess.Process, session: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:  # fmt: skip
        self.process = process
        self.errors: list[str] = []
        self._http = session
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._session_id = ""
        self._reader = asyncio.ensure_future(self._read())
        self._tasks = [self._reader]

    @classmethod
    async def launch(cls, profile: Path, width: int = 1400, height: int = 1000) -> Browser:
        """Start Chromium (profile: an empty folder it may write) with a width x height page."""
        exe = chromium_path()
        if exe is None:
            raise BrowserError(f"chromium is not installed: {INSTALL}")
        process = await asyncio.create_subprocess_exec(
            exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--remote-debugging-port=0",
            f"--window-size={width},{height}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None
        url = await _devtools_url(process)
        # Keep reading stderr, or Chromium blocks once the pipe fills.
        drain = asyncio.ensure_future(_drain(process.stderr))
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=0)
        browser = cls(process, session, ws)
        browser._tasks.append(drain)
        target = await browser.send("Target.createTarget", {"url": "about:blank"}, root=True)
        attached = await browser.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, root=True
        )
        browser._session_id = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await browser.send(f"{domain}.enable")
        await browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return browser

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def send(
        self, method: str, params: dict[str, Any] | None = None, root: bool = False
    ) -> dict[str, Any]:
        """One CDP command; its result (raises BrowserError on a CDP error)."""
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if not root:
            message["sessionId"] = self._session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        await self._ws.send_json(message)
        reply = await asyncio.wait_for(future, 60)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = message.json()
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._event(data.get("method", ""), data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in args)
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = (details.get("exception") or {}).get("description") or details.get("text")
            self.errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())

    async def goto(self, url: str, timeout: float = 30) -> None:
        """Open `url` and wait until the document finished loading."""
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'", timeout)

    async def eval(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited); its JSON value."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} raised: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll `expression` until it is truthy; its value (BrowserError on timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise BrowserError(f"timed out after {timeout}s waiting for {expression!r}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport, written to `path`."""
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    async def close(self) -> None:
        """Close the websocket and stop Chromium."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._ws.close()
        await self._http.close()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def _devtools_url(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while line := (await process.stderr.readline()).decode(errors="replace"):
                seen.append(line.rstrip())
                if line.startswith("DevTools listening on "):
                    return line.split(" on ", 1)[1].strip()
    except TimeoutError:
        pass
    if process.returncode is None:
        process.kill()
    await process.wait()
    raise BrowserError("chromium did not start: " + " | ".join(seen[-5:]))


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
