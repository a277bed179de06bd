"""`python -m tools.bench ingest | forwarding | wire | insights | product | dashboard | export |
import | people | fairness`, from the repository's root.

Benchmarks are tools, not product: they live outside the installed package. Each prints a
human summary on stderr and one JSON line on stdout (and in `--output`).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    bench = parser.add_subparsers(dest="bench_command", required=True)
    ingest = bench.add_parser("ingest", help="load /track and measure throughput, latency, loss")
    ingest.add_argument("--seconds", type=float, default=10.0)
    ingest.add_argument("--connections", type=int, default=64)
    ingest.add_argument("--batch-events", type=int, default=200_000)
    ingest.add_argument("--output", default=None, help="write the JSON report here")
    ingest.add_argument("--flush-events", dest="flush_events", type=int, default=200_000)
    ingest.add_argument(
        "--exclusions", type=int, default=0, help="give the project N non-matching exclusion rules"
    )
    ingest.add_argument(
        "--workers", type=int, default=0, help="gatrix serve processes (default: its own default)"
    )
    forwarding = bench.add_parser("forwarding", help="page latency with 1 and 2 processes")
    forwarding.add_argument("--requests", type=int, default=400)
    forwarding.add_argument("--output", default=None, help="write the JSON report here")
    wire = bench.add_parser("wire", help="req/s of /api/send, /api/event, /v1/track vs /track")
    wire.add_argument("--seconds", type=float, default=10.0)
    wire.add_argument("--connections", type=int, default=32)
    wire.add_argument("--output", default=None, help="write the JSON report here")
    insights = bench.add_parser("insights", help="query latency of every report at scale")
    insights.add_argument(
        "--events", type=int, action="append", help="dataset size (repeatable; default 1M and 10M)"
    )
    insights.add_argument("--output", default=None, help="write the JSON report here")
    insights.add_argument("--data-dir", dest="data_dir", default=None)
    insights.add_argument("--keep", action="store_true", help="keep the data and reuse it")
    people = bench.add_parser("people", help="People list, person page and erasure at scale")
    people.add_argument("--events", type=int, default=10_000_000)
    people.add_argument("--profiles", type=int, default=1_000_000)
    people.add_argument("--output", default=None, help="write the JSON report here")
    people.add_argument("--data-dir", dest="data_dir", default=None)
    people.add_argument("--keep", action="store_true", help="keep the data and reuse it")
    product = bench.add_parser("product", help="funnel, retention, paths and goals at scale")
    product.add_argument("--events", type=int, default=10_000_000)
    product.add_argument("--output", default=None, help="write the JSON report here")
    product.add_argument("--data-dir", dest="data_dir", default=None)
    product.add_argument("--keep", action="store_true", help="keep the data and reuse it")
    fairness = bench.add_parser("fairness", help="another project's wait while one client floods")
    fairness.add_argument("--events", type=int, default=3_000_000)
    fairness.add_argument("--flood", type=int, default=80)
    fairness.add_argument("--output", default=None, help="write the JSON report here")
    dashboard = bench.add_parser("dashboard", help="first chart time and bytes, in Chromium")
    dashboard.add_argument("--events", type=int, default=1_000_000)
    dashboard.add_argument("--output", default=None, help="write the JSON report here")
    for name, what in (("export", "raw export MB/s and RSS"), ("import", "import events/s")):
        port = bench.add_parser(name, help=what)
        port.add_argument("--events", type=int, default=1_000_000)
        port.add_argument("--format", action="append", help="only these formats (repeatable)")
        port.add_argument("--output", default=None, help="write the JSON report here")
        port.add_argument("--data-dir", dest="data_dir", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bench_command == "dashboard":
        from tools.bench.dashboard import run_dashboard_bench

        return run_dashboard_bench(args)
    if args.bench_command in ("export", "import"):
        from tools.bench import portability

        run = portability.run_export_bench
        return (run if args.bench_command == "export" else portability.run_import_bench)(args)
    if args.bench_command == "fairness":
        from tools.bench.fairness import run_fairness_bench

        return run_fairness_bench(args)
    if args.bench_command == "wire":
        from tools.bench.wire import run_wire_bench

        return run_wire_bench(args)
    if args.bench_command == "people":
        from tools.bench.people import run_people_bench

        return run_people_bench(args)
    if args.bench_command == "product":
        from tools.bench.product import run_product_bench

        return run_product_bench(args)
    if args.bench_command == "forwarding":
        from tools.bench.forwarding import run_forwarding_bench

        return run_forwarding_bench(args)
    if args.bench_command == "insights":
        from tools.bench.insights import run_insights_bench

        return run_insights_bench(args)
    from tools.bench.ingest import run_ingest_bench

    return run_ingest_bench(args)


if __name__ == "__main__":
    sys.exit(main())
