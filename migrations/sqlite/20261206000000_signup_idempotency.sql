-- The Idempotency-Key of each signup, written in the transaction that creates its tenant, so a
-- committed signup is found by its key even when the process died before answering and the
-- cache kept nothing. Pruned with the settled history (`history_retention`).
CREATE TABLE signup_idempotency (
    idempotency_key TEXT PRIMARY KEY NOT NULL,
    -- SHA-256 of the request body's fields: the same key with another body is refused.
    fingerprint TEXT NOT NULL,
    -- No foreign key: the key is written first in its transaction (see the PostgreSQL schema).
    tenant TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX signup_idempotency_created ON signup_idempotency (created_at);
