"""Steps: what a funnel step, a retention start or return, a path anchor and a goal match.

Syntax (README "Product analytics"):
- `page:<path or glob>`: a page view whose path (without its query) is the path, or matches
  the glob: `*` is any run of characters (`/` too), `?` one character, as in exclusions.
- `event:<name>`: a custom or page-view event of that exact name.
- either may end with conditions on the event's properties, each in its own brackets:
  `event:purchase[plan=pro]`, `page:/docs/*[lang=ko][theme=dark]`; the value is compared
  exactly and may hold any character but `]`.

The parser is the only place step text is read. A step becomes SQL only through `sql()`,
whose every value is a bound parameter: a glob is turned into a LIKE pattern with the
pattern's own metacharacters escaped, never pasted into the statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatrix.insights.filters import Params
from gatrix.insights.query import InvalidQuery
from gatrix.pageviews import PAGEVIEW_SQL

MAX_STEP_CHARS = 500
MAX_CONDITIONS = 5
_CONDITION = re.compile(r"\[([^\[\]=]{1,200})=([^\[\]]{0,200})\]")
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")


class InvalidStep(InvalidQuery):
    """Step text we cannot read; the API answers 400 invalid_query with this message."""


@dataclass(frozen=True)
class Step:
    kind: str  # "page" or "event"
    target: str  # a path or glob (page), an event name (event)
    conditions: tuple[tuple[str, str], ...] = ()

    @property
    def is_glob(self) -> bool:
        return self.kind == "page" and ("*" in self.target or "?" in self.target)

    def text(self) -> str:
        return f"{self.kind}:{self.target}" + "".join(f"[{k}={v}]" for k, v in self.conditions)

    def sql(self, params: Params, path_column: str = "path", coarse: bool = False) -> str:
        """A boolean SQL expression over an events row, values bound into `params`.
        `coarse` leaves the property conditions out: a cheap superset to filter on first, so
        the (large) properties column is read only for the rows that pass it."""
        if self.kind == "event":
            parts = [f"name = {{{params.add(self.target)}:String}}"]
        else:
            parts = [PAGEVIEW_SQL, self.path_sql(params, path_column)]
        for key, value in () if coarse else self.conditions:
            key_p, value_p = params.add(key), params.add(value)
            parts.append(f"properties[{{{key_p}:String}}] = {{{value_p}:String}}")
        return "(" + " AND ".join(parts) + ")"

    def path_sql(self, params: Params, path_column: str = "path") -> str:
        """A page step's test of the path alone (for tables that hold only page views)."""
        if self.is_glob:
            return f"{path_column} LIKE {{{params.add(like(self.target))}:String}}"
        return f"{path_column} = {{{params.add(self.target)}:String}}"


def prefilter(steps: list[Step], params: Params) -> str:
    """Rows that can match any of `steps`, on the name and path columns only. ClickHouse
    moves such a conjunct to PREWHERE; the exact OR with properties then reads few rows."""
    return "(" + " OR ".join(step.sql(params, coarse=True) for step in steps) + ")"


def like(glob: str) -> str:
    """A path glob as a LIKE pattern: LIKE's own `%`, `_` and `\\` are escaped first, so a
    path holding them matches only itself."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def parse_step(text: str, what: str = "step") -> Step:
    if not isinstance(text, str) or not text:
        raise InvalidStep(f"{what} is empty: write page:<path> or event:<name>")
    if len(text) > MAX_STEP_CHARS:
        raise InvalidStep(f"{what} is longer than {MAX_STEP_CHARS} characters")
    if not _PRINTABLE.match(text):
        raise InvalidStep(f"{what} contains a control character")
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("page", "event"):
        raise InvalidStep(f"{what} {text[:80]!r} must start with page: or event:")
    target, conditions = _split_conditions(rest, what)
    target = target.strip()
    if not target:
        raise InvalidStep(f"{what} {text[:80]!r} names no {'path' if kind == 'page' else 'event'}")
    if kind == "page" and not target.startswith(("/", "*")):
        raise InvalidStep(f"{what} {text[:80]!r}: a page path starts with / (or a glob with *)")
    return Step(kind, target, conditions)


def _split_conditions(rest: str, what: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`target[k=v][k2=v2]` → target and the conditions; brackets elsewhere are an error."""
    start = rest.find("[")
    if start < 0:
        if "]" in rest:
            raise InvalidStep(f"{what}: unbalanced ] in {rest[:80]!r}")
        return rest, ()
    target, tail = rest[:start], rest[start:]
    conditions: list[tuple[str, str]] = []
    position = 0
    while position < len(tail):
        match = _CONDITION.match(tail, position)
        if match is None:
            raise InvalidStep(
                f"{what}: conditions are written [property=value] after the target, "
                f"not {tail[position : position + 80]!r}"
            )
        key = match.group(1).strip()
        if not key:
            raise InvalidStep(f"{what}: a condition names no property")
        conditions.append((key, match.group(2)))
        position = match.end()
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidStep(f"{what}: at most {MAX_CONDITIONS} conditions")
    if "]" in target:
        raise InvalidStep(f"{what}: unbalanced ] in {target[:80]!r}")
    return target, tuple(conditions)
