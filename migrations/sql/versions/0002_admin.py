"""Access: per-project grants for users, and public share links.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_grant",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("project.id"), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.UniqueConstraint("user_id", "project_id", name="uq_grant_user_project"),
    )
    op.create_index("ix_project_grant_user_id", "project_grant", ["user_id"])
    op.create_index("ix_project_grant_project_id", "project_grant", ["project_id"])
    op.create_table(
        "share_link",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("project.id"), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_share_link_project_id", "share_link", ["project_id"])


def downgrade() -> None:
    op.drop_table("share_link")
    op.drop_table("project_grant")
