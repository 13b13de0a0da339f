"""index run_time(created_at): the Keeper prunes the Run page's window by age, every 30 s

Without it each prune scans the whole window, which at pipeline speed holds millions of rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_time", schema=None) as batch_op:
        batch_op.create_index("ix_run_time_created", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_time", schema=None) as batch_op:
        batch_op.drop_index("ix_run_time_created")
