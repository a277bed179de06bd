"""The state of the Funnels, Retention and Paths pages, all of it in the URL, and the
canonical query string each state has.

A state can arrive two ways: as the canonical query, which is also the insights API's
(`step=page:/pricing&step=event:signup&window=1h`, `interval=week&start=event:signup`,
`from=/pricing&depth=3`), so the same query string asked of `/insights/{id}/funnel` gives
the numbers the page shows; or as the builder form's fields (`kind`, `target`, `where` per
step; `direction` and `page`), which is what a browser without JavaScript submits. Both
read into the same state; htmx pushes the canonical query.

Parsing never raises: what cannot be read becomes `problem`, a sentence the page shows
above the form it came from, so a mistyped step is fixed where it was typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from gatrix.insights import funnels, paths
from gatrix.insights.cohorts import INTERVALS as RETENTION_INTERVALS
from gatrix.insights.query import RANGES, InvalidQuery
from gatrix.insights.steps import MAX_STEP_CHARS, parse_step
from gatrix.web.kit import plain_number
from gatrix.web.view import View, _filters

STEP_KINDS = ("page", "event")
WINDOWS = ("5m", "30m", "1h", "6h", "24h", "7d", "14d", "30d", "90d")
# breakdowns a funnel offers in its select (any dimension the API knows is accepted)
BREAKDOWNS = (
    "referrer_types",
    "referrers",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "countries",
    "regions",
    "cities",
    "browsers",
    "os",
    "devices",
    "languages",
    "entry_pages",
)
MAX_ROWS = 20  # step rows read from a URL; more is refused before anything is parsed
MAX_FIELD = 2 * MAX_STEP_CHARS  # longer values are cut for display; the step is refused anyway
DEFAULT_DEPTH = 3


def _one(params: Any, name: str) -> str:
    value = params.get(name)
    return str(value)[:MAX_FIELD] if value is not None else ""


def _all(params: Any, name: str) -> list[str]:
    return [str(v)[:MAX_FIELD] for v in params.getall(name, [])]


def _is_step(value: str) -> bool:
    return value.startswith(("page:", "event:"))


@dataclass(frozen=True)
class StepRow:
    """One step as the builder shows it: a kind, its target, and property conditions
    written `key=value` (or `[k=v][k2=v2]` for several)."""

    kind: str = "page"
    target: str = ""
    where: str = ""

    @property
    def blank(self) -> bool:
        return not self.target.strip() and not self.where.strip()

    def text(self) -> str:
        where = self.where.strip()
        if where and not where.startswith("["):
            where = f"[{where}]"
        return f"{self.kind}:{self.target.strip()}{where}"

    @classmethod
    def from_text(cls, text: str) -> StepRow:
        kind, sep, rest = text.partition(":")
        if not sep or kind not in STEP_KINDS:
            return cls("page", text)  # shown as typed; the step's check says what is wrong
        target, bracket, conditions = rest.partition("[")
        where = bracket + conditions
        if where.count("[") == 1 and where.endswith("]"):
            where = where[1:-1]  # one condition reads `plan=pro` in the builder
        return cls(kind, target, where)


def _rows(params: Any, prefix: str = "") -> list[StepRow]:
    kinds = _all(params, f"{prefix}kind")
    targets = _all(params, f"{prefix}target")
    wheres = _all(params, f"{prefix}where")
    count = max(len(kinds), len(targets), len(wheres))
    return [
        StepRow(
            kinds[i] if i < len(kinds) else "page",
            targets[i] if i < len(targets) else "",
            wheres[i] if i < len(wheres) else "",
        )
        for i in range(count)
    ]


def _check_step(row: StepRow, what: str) -> str:
    """The reason `row` is no step, or ""."""
    if row.kind not in STEP_KINDS:
        return f"{what}: choose page or event"
    return _check_text(row.text(), what)


def _check_text(text: str, what: str) -> str:
    try:
        parse_step(text, what)
    except InvalidQuery as exc:
        return str(exc)
    return ""


@dataclass(frozen=True)
class Range:
    """The range and filters, as the overview reads them."""

    view: View = field(default_factory=View)
    problem: str = ""

    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.view.query_string())


def read_range(params: Any, dates: list[str] | None = None) -> Range:
    """`dates`: the `start` values that are dates (retention shares `start` with its step)."""
    starts = dates if dates is not None else _all(params, "start")
    chosen = _one(params, "range")
    view = View(
        range=chosen if chosen in RANGES else "30d",
        start=(starts[0] if starts else "")[:32],
        end=_one(params, "end")[:32],
        compare="off",  # reports have no previous period
        shown_range=_one(params, "shown_range")[:16],
    )
    if chosen and chosen not in RANGES:
        # as the API answers the same query: refused, not read as the default range
        return Range(view, f"Unknown range {chosen[:40]!r}.")
    try:
        view = replace(view, filters=_filters(_all(params, "filter")))
    except InvalidQuery as exc:
        return Range(view, f"Invalid filters: {exc}.")
    return Range(view)


def _query(pairs: list[tuple[str, str]]) -> str:
    return urlencode([(k, v) for k, v in pairs if k != "compare"])


@dataclass(frozen=True)
class FunnelState:
    range: Range
    rows: tuple[StepRow, ...]
    window: str = funnels.DEFAULT_WINDOW
    breakdown: str = ""
    problem: str = ""

    @property
    def ready(self) -> bool:
        """Enough to run: steps given and nothing refused."""
        return not self.problem and not self.range.problem and bool(self.steps())

    def steps(self) -> list[str]:
        return [row.text() for row in self.rows if not row.blank]

    def query_string(self) -> str:
        pairs = self.range.query_pairs() + [("step", s) for s in self.steps()]
        if self.window != funnels.DEFAULT_WINDOW:
            pairs.append(("window", self.window))
        if self.breakdown:
            pairs.append(("breakdown", self.breakdown))
        return _query(pairs)

    def shown_rows(self) -> list[StepRow]:
        """The builder's rows: at least two, blank ones to fill."""
        rows = list(self.rows)
        return rows + [StepRow()] * (funnels.MIN_STEPS - len(rows))


def read_funnel(params: Any) -> FunnelState:
    rng = read_range(params)
    builder = "target" in params or "kind" in params
    texts = _all(params, "step")
    if len(texts) > MAX_ROWS or len(_all(params, "target")) > MAX_ROWS:
        return FunnelState(rng, (), problem=f"A funnel has {funnels.MAX_STEPS} steps at most.")
    rows = _rows(params) if builder else [StepRow.from_text(t) for t in texts]
    removed = _one(params, "remove")
    # the builder's ✕ without JavaScript
    if plain_number(removed, 3) and int(removed) < len(rows):
        del rows[int(removed)]
    if "add" in params and len(rows) < funnels.MAX_STEPS:
        rows.append(StepRow())
    given = [row for row in rows if not row.blank]
    if builder:
        rows = given + [row for row in rows if row.blank]  # blank rows wait at the end
    state = FunnelState(
        rng,
        tuple(rows),
        window=_one(params, "window") or funnels.DEFAULT_WINDOW,
        breakdown=_one(params, "breakdown")[:100],
    )
    problems: list[str] = []
    if builder:  # rows left blank in the form are no steps
        checked = [(row.text(), row) for row in given]
    else:  # a step given in the URL is checked as written, even an empty one
        checked = [(text, None) for text in texts]
        given = [StepRow.from_text(text) for text in texts]
    for n, (text, row) in enumerate(checked, start=1):
        problem = _check_step(row, f"step {n}") if row else _check_text(text, f"step {n}")
        if problem:
            problems.append(problem)
    if not problems and given and not funnels.MIN_STEPS <= len(given) <= funnels.MAX_STEPS:
        problems.append(
            f"A funnel has {funnels.MIN_STEPS} to {funnels.MAX_STEPS} steps; "
            f"this one has {len(given)}."
        )
    try:
        funnels.parse_window(state.window)
    except InvalidQuery as exc:
        problems.append(f"Window: {exc}.")
    if state.breakdown:
        try:
            funnels.breakdown_dimension(state.breakdown)
        except InvalidQuery as exc:
            problems.append(f"Breakdown: {exc}.")
    return replace(state, problem=" ".join(_sentence(p) for p in problems))


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


@dataclass(frozen=True)
class RetentionState:
    range: Range
    interval: str = "week"
    start: StepRow = StepRow("event")
    returned: StepRow = StepRow("event")
    problem: str = ""

    @property
    def ready(self) -> bool:
        return not self.problem and not self.range.problem

    def query_string(self) -> str:
        pairs = [*self.range.query_pairs(), ("interval", self.interval)]
        if not self.start.blank:
            pairs.append(("start", self.start.text()))
        if not self.returned.blank:
            pairs.append(("return", self.returned.text()))
        return _query(pairs)


def _single(params: Any, name: str, given: list[str]) -> StepRow:
    """A retention step from the builder (`start_kind`, `start_target`, `start_where`) or
    from the canonical parameter's value."""
    if f"{name}_target" in params:
        rows = _rows(params, f"{name}_")
        return rows[0] if rows else StepRow("event")
    return StepRow.from_text(given[0]) if given else StepRow("event")


def read_retention(params: Any) -> RetentionState:
    starts = _all(params, "start")
    steps, dates = [s for s in starts if _is_step(s)], [s for s in starts if not _is_step(s)]
    rng = read_range(params, dates)
    interval = _one(params, "interval") or "week"
    state = RetentionState(
        rng,
        interval=interval,
        start=_single(params, "start", steps),
        returned=_single(params, "return", _all(params, "return")),
    )
    problems = []
    if interval not in RETENTION_INTERVALS:
        problems.append(f"Interval must be one of {', '.join(RETENTION_INTERVALS)}.")
    if len(steps) > 1 or len(dates) > 1 or len(_all(params, "return")) > 1:
        problems.append("Give one start step, one return step and one start date at most.")
    written = {"start step": steps, "return step": _all(params, "return")}
    for row, what in ((state.start, "start step"), (state.returned, "return step")):
        if f"{what.split()[0]}_target" in params:  # from the form: a blank box is any event
            problem = "" if row.blank else _check_step(row, what)
        else:  # from the URL: checked as written
            problem = _check_text(written[what][0], what) if written[what] else ""
        if problem:
            problems.append(_sentence(problem))
    return replace(state, problem=" ".join(problems))


@dataclass(frozen=True)
class PathsState:
    range: Range
    direction: str = "from"
    page: str = ""
    depth: str = str(DEFAULT_DEPTH)
    problem: str = ""

    @property
    def ready(self) -> bool:
        return not self.problem and not self.range.problem and bool(self.page.strip())

    def query_string(self) -> str:
        pairs = self.range.query_pairs()
        if self.page.strip():
            pairs.append((self.direction, self.page.strip()))
        if self.depth != str(DEFAULT_DEPTH):
            pairs.append(("depth", self.depth))
        return _query(pairs)


def read_paths(params: Any) -> PathsState:
    rng = read_range(params)
    if "page" in params:  # the form: a direction select and a page box
        chosen = _one(params, "direction")
        direction, page = (chosen if chosen in ("from", "to") else "from"), _one(params, "page")
        both = False
    else:
        direction = "to" if "to" in params and "from" not in params else "from"
        page = _one(params, direction)
        both = "from" in params and "to" in params
    state = PathsState(rng, direction, page, _one(params, "depth") or str(DEFAULT_DEPTH))
    problems = []
    if both:
        problems.append("Give a page to start from or a page to end at, not both.")
    if not (
        plain_number(state.depth, 3) and paths.MIN_DEPTH <= int(state.depth) <= paths.MAX_DEPTH
    ):
        problems.append(f"Depth must be between {paths.MIN_DEPTH} and {paths.MAX_DEPTH}.")
    if page.strip():
        try:
            paths.anchor_step(page.strip())
        except InvalidQuery as exc:
            problems.append(_sentence(str(exc)))
    return replace(state, problem=" ".join(problems))
