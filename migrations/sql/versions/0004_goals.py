"""Goals: per-project conversions (a step and a revenue property) for the goals report.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "goal",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("step", sa.String(500), nullable=False),
        sa.Column("revenue_property", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_goal_project_id", "goal", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_goal_project_id", table_name="goal")
    op.drop_table("goal")
