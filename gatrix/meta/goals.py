"""A project's goals in the metadata database: listed, created (validated) and deleted. The
report over them is gatrix.insights.goals; the step text is read by gatrix.insights.steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gatrix.insights.steps import InvalidStep, parse_step
from gatrix.meta.models import Goal, lock_project, within_cap

MAX_GOALS = 50
MAX_NAME = 100
MAX_PROPERTY = 200


class InvalidGoal(ValueError):
    """A goal definition we refuse; the API answers 400 invalid_goal with this message."""


@dataclass(frozen=True)
class GoalDef:
    id: int
    name: str
    step: str
    revenue_property: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "step": self.step,
            "revenue_property": self.revenue_property or None,
        }


def _def(goal: Goal) -> GoalDef:
    return GoalDef(int(goal.id or 0), goal.name, goal.step, goal.revenue_property)


def list_goals(engine: Engine, project_id: str) -> list[GoalDef]:
    with Session(engine) as db:
        rows = db.exec(
            select(Goal).where(Goal.project_id == project_id).order_by(col(Goal.id))
        ).all()
        return [_def(g) for g in rows]


def get_goal(engine: Engine, project_id: str, goal_id: int) -> GoalDef | None:
    with Session(engine) as db:
        goal = db.get(Goal, goal_id)
        # another project's goal is as unknown as a missing one
        return _def(goal) if goal is not None and goal.project_id == project_id else None


def _text(body: dict[str, Any], key: str, limit: int) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidGoal(f"{key} must be a string")
    value = value.strip()
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidGoal(f"{key} is at most {limit} printable characters")
    return value


def parse_goal(body: Any) -> tuple[str, str, str]:
    """`{"name", "step" | "event" | "page", "revenue_property"?}` → (name, step, property)."""
    if not isinstance(body, dict):
        raise InvalidGoal("send a JSON object: {name, step (or event, or page), revenue_property}")
    unknown = set(body) - {"name", "step", "event", "page", "revenue_property"}
    if unknown:
        raise InvalidGoal(f"unknown field {sorted(unknown)[0]!r}")
    name = _text(body, "name", MAX_NAME)
    given = [k for k in ("step", "event", "page") if body.get(k) not in (None, "")]
    if len(given) != 1:
        raise InvalidGoal("give exactly one of step, event or page")
    text = _text(body, given[0], 500)
    step_text = text if given[0] == "step" else f"{given[0]}:{text}"
    try:
        step = parse_step(step_text, "goal")
    except InvalidStep as exc:
        raise InvalidGoal(str(exc)) from None
    return name or step.text(), step.text(), _text(body, "revenue_property", MAX_PROPERTY)


def create_goal(engine: Engine, project_id: str, body: Any) -> GoalDef:
    name, step, revenue_property = parse_goal(body)
    with Session(engine) as db:
        lock_project(db, project_id)
        count = len(db.exec(select(Goal.id).where(Goal.project_id == project_id)).all())
        if count >= MAX_GOALS:
            raise InvalidGoal(f"a project has at most {MAX_GOALS} goals")
        goal = Goal(project_id=project_id, name=name, step=step, revenue_property=revenue_property)
        db.add(goal)
        db.commit()
        db.refresh(goal)
        if not within_cap(db, goal, MAX_GOALS, col(Goal.project_id) == project_id):
            raise InvalidGoal(f"a project has at most {MAX_GOALS} goals")
        return _def(goal)


def delete_goal(engine: Engine, project_id: str, goal_id: int) -> bool:
    with Session(engine) as db:
        result = db.execute(
            delete(Goal).where(col(Goal.id) == goal_id, col(Goal.project_id) == project_id)
        )
        db.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]
