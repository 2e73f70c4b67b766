"""Call records, their timeline and the outbox of end-of-call summaries.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from app.records.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("provider_call_id", sa.String(128)),
        sa.Column("ultravox_call_id", sa.String(64)),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("route", sa.String(128)),
        sa.Column("caller", sa.String(64)),
        sa.Column("called", sa.String(64)),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("answered_at", UTCDateTime()),
        sa.Column("joined_at", UTCDateTime()),
        sa.Column("ended_at", UTCDateTime()),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("ended_by", sa.String(16)),
        sa.Column("end_reason", sa.String(32)),
        sa.Column("provider_status", sa.String(32)),
        sa.Column("hangup_cause", sa.String(64)),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("billed_duration_seconds", sa.Float()),
        sa.Column("billing_status", sa.String(48)),
        sa.Column("short_summary", sa.Text()),
        sa.Column("delivery_status", sa.String(16)),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("delivery_error", sa.Text()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
        sa.UniqueConstraint("ultravox_call_id", name="uq_calls_ultravox_call_id"),
        sa.UniqueConstraint(
            "provider", "provider_call_id", name="uq_calls_provider_provider_call_id"
        ),
    )
    op.create_index("ix_calls_received_at_id", "calls", ["received_at", "id"])
    op.create_index("ix_calls_updated_at_id", "calls", ["updated_at", "id"])
    op.create_index("ix_calls_state_expires_at", "calls", ["state", "expires_at"])
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("key", sa.String(160)),
        sa.Column("detail", sa.Text()),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name="fk_call_events_call_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_call_events"),
        sa.UniqueConstraint("call_id", "key", name="uq_call_events_call_id_key"),
    )
    op.create_index("ix_call_events_call_id", "call_events", ["call_id"])
    op.create_table(
        "call_event_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("payload", sa.Text()),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name="fk_call_event_deliveries_call_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_call_event_deliveries"),
        sa.UniqueConstraint("call_id", name="uq_call_event_deliveries_call_id"),
    )
    op.create_index(
        "ix_call_event_deliveries_next_attempt_at", "call_event_deliveries", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("call_event_deliveries")
    op.drop_table("call_events")
    op.drop_table("calls")
