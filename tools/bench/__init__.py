"""`python -m tools.bench ingest`: throughput, latency and loss of `/track`, measured end to end.

The benchmark starts a real `gatrix serve` in embedded mode (chDB + embedded Redis) in its own
temp data dir, and next to it a bare ASGI app (`bare`) served by the same uvicorn settings. The
bare app does nothing but read the body and answer, so its rate is the ceiling this machine,
this server software and this load generator allow; the ratio of the two says how much of that
ceiling the ingest path keeps, which is more portable across machines than a raw requests/s.

The load generator (`load`) runs in its own process (wrk, or a small asyncio client when wrk is
missing) so that its CPU use never shares an event loop or a GIL with what it measures.

Loss is checked from the outside (`processes`): once /health reports an empty buffer the server
gets SIGTERM and a fresh process counts the rows in ClickHouse. Waiting for the drain first
matters: events still buffered at shutdown stay in the embedded Redis and only reach ClickHouse
after a restart, which would read as loss here. The benchmark never opens chDB itself, because
only one process may hold a chDB data path at a time; for the same reason the flush phase
(`flushphase`, buffer → ClickHouse alone) runs in a subprocess with a data dir of its own.

Human-readable progress and the summary go to stderr; the JSON report is the one line on stdout
(and the `--output` file), like the other CLI commands meant for automation.
"""

from tools.bench.bare import bare_app
from tools.bench.ingest import run_ingest_bench

__all__ = ["bare_app", "run_ingest_bench"]
