"""People and data keeping: per-project retention and traffic exclusions, the Umami website
id a project answers to, and the audit log of erasures.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("project") as batch:
        batch.add_column(
            sa.Column("retention_days", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("exclusions_json", sa.Text(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(
            sa.Column("umami_website_id", sa.String(64), nullable=False, server_default="")
        )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_audit_entry_project_id", "audit_entry", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_entry_project_id", table_name="audit_entry")
    op.drop_table("audit_entry")
    with op.batch_alter_table("project") as batch:
        batch.drop_column("umami_website_id")
        batch.drop_column("exclusions_json")
        batch.drop_column("retention_days")
