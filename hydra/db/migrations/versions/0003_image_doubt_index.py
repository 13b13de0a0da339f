"""index image(plot_type_id, label_id, doubt): the Labeler's most-doubtful-first page

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_image_plot_label_doubt", "image", ["plot_type_id", "label_id", "doubt"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_image_plot_label_doubt", table_name="image")
