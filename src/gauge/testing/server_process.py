"""Process mode of the mock OpenAI server: `python -m gauge.testing.openai_server ...`.

Parses the flags (every OpenAIServer option, faults included), binds one socket,
and serves it from `--workers` forked processes; prints `listening on <url>`
once ready and stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import TYPE_CHECKING

from gauge.testing import faults as fault
from gauge.testing.faults import Faults

if TYPE_CHECKING:
    from gauge.testing.openai_server import OpenAIServer


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gauge.testing.openai_server",
        description="Mock OpenAI-compatible server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument(
        "--capacity",
        type=int,
        default=None,
        help="requests worked on at once; the rest queue (an inference server's batch)",
    )
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s before 429")
    parser.add_argument("--tpm", type=float, default=None, help="tokens/min before 429")
    parser.add_argument(
        "--token-window", type=float, default=60.0, help="seconds the tpm limit is enforced over"
    )
    parser.add_argument(
        "--rate-headers", action="store_true", help="send x-ratelimit-* headers on every answer"
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="fraction never answered")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="fraction with bad JSON")
    parser.add_argument("--reset-rate", type=float, default=0.0, help="fraction reset, no answer")
    parser.add_argument(
        "--truncate-rate", type=float, default=0.0, help="fraction of streams cut before [DONE]"
    )
    parser.add_argument(
        "--trickle-rate", type=float, default=0.0, help="fraction sent slowly, in spaced pieces"
    )
    parser.add_argument(
        "--trickle-delay", type=float, default=0.05, help="seconds between trickled pieces"
    )
    parser.add_argument(
        "--storm-rate", type=float, default=0.0, help="chance a request starts a 429 storm"
    )
    parser.add_argument("--storm-seconds", type=float, default=1.0, help="length of a 429 storm")
    parser.add_argument(
        "--storm-no-retry-after",
        action="store_true",
        help="storm 429s carry no Retry-After (or other wait) header",
    )
    parser.add_argument(
        "--sporadic-429-rate",
        dest="sporadic_rate",
        type=float,
        default=0.0,
        help="fraction answered a lone 429 (Retry-After) while the headers show budget left",
    )
    parser.add_argument(
        "--request-log", default=None, help="append one JSON line per request to this file"
    )
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds sent with 429")
    parser.add_argument("--reply", default=None, help="fixed reply text (default: echo)")
    parser.add_argument("--validate", action="store_true", help="validate bodies against the spec")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        Faults(**{name: getattr(args, name) for name in fault.RATE_FIELDS})
    except ValueError as ex:
        parser.error(str(ex))
    return args


def main(server_class: type[OpenAIServer], argv: list[str] | None = None) -> None:
    """Serve `server_class` until interrupted; prints `listening on <url>` once ready.

    The class is passed in (by `gauge.testing.openai_server.main`), so this module
    does not import the server it runs.
    """
    args = _parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    children = []
    for worker in range(1, max(1, args.workers)):
        pid = os.fork()
        if pid == 0:
            _serve(server_class, args, sock, worker, announce=None)
            os._exit(0)
        children.append(pid)
    try:
        _serve(server_class, args, sock, 0, announce=f"listening on http://{args.host}:{port}/v1")
    finally:
        for pid in children:
            try:
                os.kill(pid, 15)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _serve(
    server_class: type[OpenAIServer],
    args: argparse.Namespace,
    sock: socket.socket,
    worker: int,
    announce: str | None,
) -> None:
    async def run() -> None:
        server = server_class(
            host=args.host,
            port=sock.getsockname()[1],
            latency=args.latency,
            capacity=args.capacity,
            rate_limit=args.rate_limit,
            tokens_per_minute=args.tpm,
            token_window=args.token_window,
            rate_headers=args.rate_headers,
            error_rate=args.error_rate,
            hang_rate=args.hang_rate,
            malformed_rate=args.malformed_rate,
            retry_after=args.retry_after,
            validate=args.validate,
            record=False,
            reply=args.reply,
            seed=args.seed + worker,
            reset_rate=args.reset_rate,
            truncate_rate=args.truncate_rate,
            trickle_rate=args.trickle_rate,
            trickle_delay=args.trickle_delay,
            storm_rate=args.storm_rate,
            storm_seconds=args.storm_seconds,
            storm_retry_after=not args.storm_no_retry_after,
            sporadic_rate=args.sporadic_rate,
            request_log=args.request_log,
        )
        await server.start(sock)
        if announce:
            print(announce, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)
