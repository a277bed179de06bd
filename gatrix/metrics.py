"""`GET /metrics` in the Prometheus text format: ingestion outcomes, buffer, flush and request
latency. Request and outcome counts cover every process of this server (the ingest processes
report theirs through Redis, see `gatrix.ingest.siblings`); flush counts are the primary's, the
only process that flushes; buffer figures are global."""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatrix.ingest.siblings import Report
    from gatrix.services import Services

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


def _number(value: float | None, empty: float | None = None) -> str:
    if value is None:
        return "NaN" if empty is None else str(empty)
    return str(value)


def render(services: Services, reports: list[Report] | None = None) -> str:
    from gatrix.ingest.siblings import add_up

    lines: list[str] = []
    requests, outcomes = add_up(services.request_metrics, services.counters.totals, reports or [])

    def metric(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    metric("gatrix_events_total", "counter", "Ingest outcomes by project and outcome.")
    for (project, outcome), n in sorted(outcomes.items()):
        lines.append(
            f'gatrix_events_total{{project="{_esc(project)}",outcome="{_esc(outcome)}"}} {n}'
        )
    state = services.supervisor.state
    up = state.redis_up
    metric("gatrix_redis_up", "gauge", "1 when the buffer's Redis answered the last check.")
    lines.append(f"gatrix_redis_up {int(up)}")
    # while Redis is down its figures are unknown: NaN, never a reassuring 0
    gauges = (
        ("gatrix_buffer_depth", "Items waiting in the Redis buffer.", "depth"),
        ("gatrix_buffer_bytes", "Memory used by buffered items.", "bytes"),
        (
            "gatrix_buffer_claimed_batches",
            "Batches claimed, not yet acknowledged.",
            "claimed_batches",
        ),
        ("gatrix_dead_letters", "Rows ClickHouse rejected, kept with their error.", "dead_letters"),
    )
    for name, help_text, attr in gauges:
        metric(name, "gauge", help_text)
        value = getattr(state, attr) if up else None
        lines.append(f"{name} {_number(value)}")
    metric("gatrix_buffer_oldest_event_age_seconds", "gauge", "Age of the oldest buffered item.")
    # an empty buffer has no oldest event (0); a Redis we cannot read has an unknown one (NaN)
    age = state.oldest_age_s() if up else None
    lines.append(f"gatrix_buffer_oldest_event_age_seconds {_number(age, empty=0 if up else None)}")
    metric("gatrix_buffer_over_high_water", "gauge", "1 while /track refuses events (503).")
    lines.append(
        f"gatrix_buffer_over_high_water {int(state.over_high_water or state.at_memory_cap)}"
    )
    metric("gatrix_redis_evicted_keys_total", "counter", "Keys Redis evicted (visitor sessions).")
    lines.append(f"gatrix_redis_evicted_keys_total {_number(state.evicted_keys if up else None)}")
    restarts = services.embedded_redis.restarts if services.embedded_redis else 0
    metric("gatrix_redis_restarts_total", "counter", "Restarts of the embedded Redis.")
    lines.append(f"gatrix_redis_restarts_total {restarts}")
    stats = services.flusher.stats
    metric("gatrix_flush_batches_total", "counter", "Chunks of claimed batches inserted here.")
    lines.append(f"gatrix_flush_batches_total {stats.batches}")
    metric("gatrix_flush_rows_total", "counter", "Rows inserted by this process.")
    lines.append(f"gatrix_flush_rows_total {stats.rows}")
    metric("gatrix_flush_errors_total", "counter", "Failed inserts (retried or split).")
    lines.append(f"gatrix_flush_errors_total {stats.errors}")
    metric("gatrix_flush_isolations_total", "counter", "Batches split to isolate bad rows.")
    lines.append(f"gatrix_flush_isolations_total {stats.isolations}")
    metric("gatrix_flush_duration_seconds", "histogram", "Time to insert one chunk.")
    lines += stats.histogram.lines("gatrix_flush_duration_seconds", "")
    metric("gatrix_group_commits_total", "counter", "Redis round trips of the writer.")
    lines.append(f"gatrix_group_commits_total {services.writer.round_trips}")
    metric("gatrix_request_duration_seconds", "histogram", "HTTP request latency.")
    for (group, status), histogram in sorted(requests.by_group.items()):
        lines += histogram.lines(
            "gatrix_request_duration_seconds", f'route="{group}",status="{status}"'
        )
    expected = services.plan.count if services.plan is not None else 0
    metric("gatrix_processes", "gauge", "Processes of this server: the primary and ingest ones.")
    lines.append(f"gatrix_processes {1 + expected}")
    metric("gatrix_ingest_processes_reporting", "gauge", "Ingest processes whose figures are in.")
    lines.append(f"gatrix_ingest_processes_reporting {len(reports or [])}")
    metric("gatrix_process_requests_total", "counter", "Requests each process handled itself.")
    own = sum(h.n for h in services.request_metrics.by_group.values())
    lines.append(f'gatrix_process_requests_total{{process="0"}} {own}')
    for report in reports or []:
        handled = sum(sum(int(n) for n in counts) for _, _, counts, _ in report.requests)
        lines.append(f'gatrix_process_requests_total{{process="{report.index}"}} {handled}')
    return "\n".join(lines) + "\n"
