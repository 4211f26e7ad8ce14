-- The Idempotency-Key of each signup, written in the transaction that creates its tenant, so a
-- committed signup is found by its key even when the process died before answering and the
-- cache kept nothing. Pruned with the settled history (`history_retention`).
CREATE TABLE signup_idempotency (
    idempotency_key text PRIMARY KEY,
    -- SHA-256 of the request body's fields: the same key with another body is refused.
    fingerprint text NOT NULL,
    -- No foreign key: the key is written first in its transaction, so a concurrent signup with
    -- the same key waits on it (PostgreSQL) before doing any other work. Tenants are never
    -- deleted from the table, only marked deleted.
    tenant text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX signup_idempotency_created ON signup_idempotency (created_at);
