"""`GET /metrics` in the Prometheus text format: ingestion outcomes, buffer, flush and request
latency. Counters live in this process (scrape every process); buffer figures are global."""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        out.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


class RequestMetrics:
    """Request latency per route group (track, insights, pages, other)."""

    def __init__(self) -> None:
        self.by_group: dict[tuple[str, str], Histogram] = defaultdict(Histogram)

    def histogram(self, group: str, status: int) -> Histogram:
        return self.by_group[(group, f"{status // 100}xx")]

    def observe(self, group: str, status: int, seconds: float) -> None:
        self.histogram(group, status).observe(seconds)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render(runtime: Any, buffer_stats: dict[str, Any]) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    metric("gatrix_events_total", "counter", "Ingest outcomes by project and outcome.")
    for (project, outcome), n in sorted(runtime.counters.totals.items()):
        lines.append(
            f'gatrix_events_total{{project="{_esc(project)}",outcome="{_esc(outcome)}"}} {n}'
        )
    metric("gatrix_buffer_depth", "gauge", "Items waiting in the Redis buffer.")
    lines.append(f"gatrix_buffer_depth {buffer_stats.get('depth', 0)}")
    metric("gatrix_buffer_claimed_batches", "gauge", "Batches claimed and not yet acknowledged.")
    lines.append(f"gatrix_buffer_claimed_batches {buffer_stats.get('claimed_batches', 0)}")
    metric("gatrix_dead_letters", "gauge", "Rows ClickHouse rejected, kept with their error.")
    lines.append(f"gatrix_dead_letters {buffer_stats.get('dead_letters', 0)}")
    stats = runtime.flusher.stats if runtime.flusher else None
    if stats is not None:
        metric("gatrix_flush_batches_total", "counter", "Batches inserted by this process.")
        lines.append(f"gatrix_flush_batches_total {stats.batches}")
        metric("gatrix_flush_rows_total", "counter", "Rows inserted by this process.")
        lines.append(f"gatrix_flush_rows_total {stats.rows}")
        metric("gatrix_flush_errors_total", "counter", "Failed inserts (retried or split).")
        lines.append(f"gatrix_flush_errors_total {stats.errors}")
        metric("gatrix_flush_duration_seconds", "histogram", "Time to insert one batch.")
        lines += stats.histogram.lines("gatrix_flush_duration_seconds", "")
    writer = runtime.writer
    if writer is not None:
        metric("gatrix_group_commits_total", "counter", "Redis round trips of the writer.")
        lines.append(f"gatrix_group_commits_total {writer.round_trips}")
    metric("gatrix_request_duration_seconds", "histogram", "HTTP request latency.")
    for (group, status), histogram in sorted(runtime.request_metrics.by_group.items()):
        lines += histogram.lines(
            "gatrix_request_duration_seconds", f'route="{group}",status="{status}"'
        )
    return "\n".join(lines) + "\n"
