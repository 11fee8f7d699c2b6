"""Server metrics in Prometheus' text format (GET /metrics).

    gauge_requests_total{route,status}       finished requests
    gauge_requests_running                   requests admitted and not finished
    gauge_prompt_tokens_total                prompt tokens of finished requests
    gauge_generation_tokens_total            generated tokens of finished requests
    gauge_queue_time_seconds                 histogram: arrival -> engine starts it
    gauge_time_to_first_token_seconds        histogram: arrival -> first output token sent
    gauge_request_latency_seconds            histogram: arrival -> last byte

Plain counters, updated on the event loop only, so no locks.
"""

from __future__ import annotations

import bisect
from collections import Counter

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """A cumulative-bucket histogram, as Prometheus expects."""

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one value (seconds)."""
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.count += 1

    def render(self) -> list[str]:
        """The histogram's lines in Prometheus' text format."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(BUCKETS, self.counts, strict=False):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.total:.6f}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Metrics:
    """Everything /metrics reports."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.running = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.queue_time = Histogram(
            "gauge_queue_time_seconds", "Time from arrival until the engine starts the request."
        )
        self.ttft = Histogram(
            "gauge_time_to_first_token_seconds", "Time from arrival until the first output token."
        )
        self.latency = Histogram(
            "gauge_request_latency_seconds", "Time from arrival until the response is complete."
        )

    def finished(self, route: str, status: int) -> None:
        """Count one finished request."""
        self.requests[(route, status)] += 1

    def tokens(self, prompt: int, generated: int) -> None:
        """Add one request's token usage."""
        self.prompt_tokens += prompt
        self.generation_tokens += generated

    def render(self, engine_state: str) -> str:
        """All metrics as Prometheus text."""
        lines = [
            "# HELP gauge_requests_total Finished requests by route and HTTP status.",
            "# TYPE gauge_requests_total counter",
        ]
        for (route, status), count in sorted(self.requests.items()):
            lines.append(f'gauge_requests_total{{route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP gauge_requests_running Requests admitted and not finished.",
            "# TYPE gauge_requests_running gauge",
            f"gauge_requests_running {self.running}",
            "# HELP gauge_prompt_tokens_total Prompt tokens of finished requests.",
            "# TYPE gauge_prompt_tokens_total counter",
            f"gauge_prompt_tokens_total {self.prompt_tokens}",
            "# HELP gauge_generation_tokens_total Generated tokens of finished requests.",
            "# TYPE gauge_generation_tokens_total counter",
            f"gauge_generation_tokens_total {self.generation_tokens}",
            "# HELP gauge_engine_ready Whether the engine is ready (1) or not (0).",
            "# TYPE gauge_engine_ready gauge",
            f'gauge_engine_ready{{state="{engine_state}"}} {int(engine_state == "ready")}',
        ]
        for histogram in (self.queue_time, self.ttft, self.latency):
            lines += histogram.render()
        return "\n".join(lines) + "\n"
