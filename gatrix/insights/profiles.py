"""A profile as the product shows it: the newest non-empty value of each identify field, the
newest value of each property, and the running totals of increment/decrement."""

from __future__ import annotations

from typing import Any

from gatrix.clickhouse.store import Store


def get_profile(store: Store, project_id: str, profile_id: str) -> dict[str, Any] | None:
    params = {"project": project_id, "profile": profile_id}
    where = "project_id = {project:String} AND profile_id = {profile:String}"
    db = store.db
    head = store.query_dicts(
        f"""SELECT count() AS updates,
                   argMaxIf(first_name, updated_at, first_name != '') AS first_name,
                   argMaxIf(last_name, updated_at, last_name != '') AS last_name,
                   argMaxIf(email, updated_at, email != '') AS email,
                   argMaxIf(avatar, updated_at, avatar != '') AS avatar,
                   min(updated_at) AS first_seen, max(updated_at) AS last_seen
            FROM {db}.profiles WHERE {where}""",
        params,
    )[0]
    counters = dict(
        store.query_rows(
            f"SELECT property, sum(value) FROM {db}.profile_counters WHERE {where} "
            "GROUP BY property ORDER BY property",
            params,
        )
    )
    if not head["updates"] and not counters:
        return None
    properties = dict(
        store.query_rows(
            f"""SELECT key, argMax(value, updated_at) FROM {db}.profiles
                ARRAY JOIN mapKeys(properties) AS key, mapValues(properties) AS value
                WHERE {where} GROUP BY key ORDER BY key""",
            params,
        )
    )
    return {
        "project_id": project_id,
        "profile_id": profile_id,
        "first_name": head["first_name"],
        "last_name": head["last_name"],
        "email": head["email"],
        "avatar": head["avatar"],
        "properties": properties,
        "counters": counters,
    }
