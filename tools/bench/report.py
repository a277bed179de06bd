"""Judging a run: how rows in ClickHouse compare with what the generators saw, and the summary."""

from __future__ import annotations

from typing import Any


def account_rows(
    rows: int | None, counted: int, connections: int, problems: list[str], notes: list[str]
) -> tuple[int | None, int | None]:
    """Split the gap between counted acceptances and stored rows into (lost, uncounted).

    The generator abandons the requests in flight at its deadline: the server may have stored
    those events without the generator ever counting the reply, at most one per connection. So
    extra rows are expected up to `connections`; missing rows are loss. The two can offset
    each other, which makes `lost` a lower bound when both happen in one run.
    """
    if rows is None:
        return None, None
    lost = max(0, counted - rows)
    uncounted = max(0, rows - counted)
    if lost:
        problems.append(f"{lost} accepted events are missing from ClickHouse")
    if uncounted > connections:
        problems.append(
            f"{uncounted} more rows than counted acceptances: more than the {connections} "
            "requests that can be in flight when the generator stops"
        )
    elif uncounted:
        notes.append(
            f"{uncounted} more rows than counted acceptances: within the {connections} "
            "requests that can be in flight when the generator stops"
        )
    return lost, uncounted


def fmt(value: Any, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _flush_line(flush: dict[str, Any]) -> str:
    if not flush.get("events"):
        return "skipped"
    if flush.get("seconds") is None:
        return f"failed ({flush['events']:,} events)"
    return (
        f"{flush['events']:,} events in {flush['seconds']:.2f} s = "
        f"{fmt(flush['events_per_s'])} ev/s"
    )


def summary(report: dict[str, Any]) -> str:
    g, b, batch = report["gatrix"], report["bare"], report["batch"]
    m = report["machine"]
    lines = [
        "",
        f"tools.bench ingest — {report['generator']}, {report['connections']} connections, "
        f"{report['seconds']:g}s per run, {m['cpu_count']} CPUs ({m['platform']})",
        "  (the generator shares the machine's CPUs with the server it loads)",
        f"  bare ASGI ceiling  : {fmt(b['rps'])} req/s   p50 {fmt(b['p50_ms'], '.2f')} ms   "
        f"p99 {fmt(b['p99_ms'], '.2f')} ms",
        f"  gatrix /track      : {fmt(g['rps'])} req/s   p50 {fmt(g['p50_ms'], '.2f')} ms   "
        f"p99 {fmt(g['p99_ms'], '.2f')} ms",
        f"  ratio              : {fmt(report['ratio'], '.1%')} of the ceiling "
        f"(gatrix in {report.get('workers', 1)} processes, bare in 1)",
        f"  accepted           : {g['accepted']:,}   non-2xx {g['non_2xx']:,}   "
        f"socket errors {g['errors']:,}",
        f"  queryable after    : {fmt(report['seconds_until_queryable'], '.2f')} s "
        "(load end → buffer empty, no claims)",
        f"  /track/batch       : {batch['events']:,} events, "
        f"{fmt(batch['http_events_per_s'])} ev/s accepted over HTTP, "
        f"{fmt(batch['into_clickhouse_events_per_s'])} ev/s into ClickHouse",
        f"  rows in ClickHouse : {fmt(report['rows_in_clickhouse'], ',')}   "
        f"expected {report['expected_rows']:,}   lost {fmt(report['lost'], ',')}   "
        f"uncounted in flight {fmt(report['uncounted_in_flight'], ',')}",
        f"  buffer → ClickHouse: {_flush_line(report['flush'])}",
    ]
    rss = report.get("rss_mb")
    if rss:
        idle = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(rss["idle"].items()))
        load = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(rss["after_track_load"].items()))
        lines.append(f"  RSS idle (MB)      : {idle}")
        lines.append(f"  RSS after load (MB): {load}")
    same = report.get("bare_same_processes")
    if same:
        lines.append(
            f"  bare, {report['workers']} processes: {fmt(same['rps'])} req/s   "
            f"p99 {fmt(same['p99_ms'], '.2f')} ms   gatrix is "
            f"{fmt(report['ratio_same_processes'], '.1%')} of it"
        )
    lines += [f"  note: {note}" for note in report["notes"]]
    lines += [f"  PROBLEM: {problem}" for problem in report["problems"]]
    return "\n".join(lines)
