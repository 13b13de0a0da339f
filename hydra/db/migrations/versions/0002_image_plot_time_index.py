"""index image(plot_type_id, created_at): the newest kept image of a plot type without a model

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_image_plot_time", "image", ["plot_type_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_image_plot_time", table_name="image")
