"""ClickHouse DDL for a cluster (GATRIX_CLICKHOUSE_CLUSTER=name).

The migrations are written for one server. On a cluster each table becomes a replicated
`<name>_local` on every node plus a Distributed `<name>` in front of it, so the rest of the
product keeps reading and writing `<name>`; materialized views run on every node, from the
local events into the local rollups, and everything is created ON CLUSTER.
"""

from __future__ import annotations

import re

_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<db>\w+)\.(?P<name>\w+)\s*(?P<columns>\(.*\))\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?(?P<rest>.*)$",
    re.S,
)
_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<db>\w+)\.(?P<name>\w+) TO (?P=db)\.(?P<to>\w+)"
    r" AS(?P<select>.*)$",
    re.S,
)
# a backfill (INSERT … SELECT) runs once, through the Distributed tables, on one node
_INSERT = re.compile(r"^INSERT INTO \w+\.\w+\s")
_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS (?P<db>\w+)$")
_DROP_VIEW = re.compile(r"^DROP VIEW IF EXISTS (?P<db>\w+)\.(?P<name>\w+)$")
# a schema change of one table: on every node's local table
_ALTER = re.compile(r"^ALTER TABLE (?P<db>\w+)\.(?P<name>\w+)\s(?P<rest>.*)$", re.S)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def clusterize(statement: str, cluster: str) -> list[str]:
    """The statements that replace one single-server statement on `cluster`."""
    if not _IDENT.match(cluster):
        raise ValueError(f"invalid cluster name: {cluster!r}")
    statement = statement.strip()
    if _INSERT.match(statement):
        return [statement]
    if m := _DATABASE.match(statement):
        return [f"CREATE DATABASE IF NOT EXISTS {m['db']} ON CLUSTER {cluster}"]
    if m := _DROP_VIEW.match(statement):
        return [f"DROP VIEW IF EXISTS {m['db']}.{m['name']} ON CLUSTER {cluster}"]
    if m := _ALTER.match(statement):
        return [f"ALTER TABLE {m['db']}.{m['name']}_local ON CLUSTER {cluster} {m['rest']}"]
    if m := _TABLE.match(statement):
        db, name = m["db"], m["name"]
        args = (m["args"] or "").strip()
        zk = f"'/clickhouse/tables/{{shard}}/{db}/{name}', '{{replica}}'"
        engine_args = f"{zk}, {args}" if args else zk
        local = (
            f"CREATE TABLE IF NOT EXISTS {db}.{name}_local ON CLUSTER {cluster}\n"
            f"{m['columns']}\nENGINE = Replicated{m['engine']}({engine_args}){m['rest']}"
        )
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} AS {db}.{name}_local\n"
            f"ENGINE = Distributed({cluster}, {db}, {name}_local, rand())"
        )
        return [local, distributed]
    if statement.startswith("INSERT INTO "):
        # a backfill reads and writes the Distributed tables: once, from this node
        return [statement]
    if m := _VIEW.match(statement):
        db = m["db"]
        select = re.sub(rf"\bFROM {db}\.(\w+)", rf"FROM {db}.\1_local", m["select"])
        return [
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{m['name']} ON CLUSTER {cluster} "
            f"TO {db}.{m['to']}_local AS{select}"
        ]
    raise ValueError(f"no cluster form for statement: {statement[:80]}")
