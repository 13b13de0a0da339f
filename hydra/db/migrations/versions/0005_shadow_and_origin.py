"""model.shadow (a candidate served beside the active model), inference.origin (live, shadow, reprocess)
and index inference(model_id, created_at): a model's own results, for the Library's comparison

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shadow", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("inference", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "origin", sqlmodel.sql.sqltypes.AutoString(length=16), server_default="live", nullable=False
            )
        )
        batch_op.create_index("ix_inference_model_time", ["model_id", "created_at"], unique=False)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ("mysql", "mariadb"):
        # InnoDB may have dropped its own index for the model_id foreign key when ours came (ours
        # serves it); give the key one back first, or ours cannot be dropped
        names = {ix["name"] for ix in sa.inspect(bind).get_indexes("inference")}
        if "model_id" not in names:
            op.create_index("model_id", "inference", ["model_id"], unique=False)
    with op.batch_alter_table("inference", schema=None) as batch_op:
        batch_op.drop_index("ix_inference_model_time")
        batch_op.drop_column("origin")
    with op.batch_alter_table("model", schema=None) as batch_op:
        batch_op.drop_column("shadow")
