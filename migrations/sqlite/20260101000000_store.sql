-- The control plane's store. Timestamps are fixed-width UTC text with microseconds
-- (2026-03-01T12:00:00.000000Z), so text order is time order in comparisons and ORDER BY.
-- JSON is text; booleans are 0/1.

CREATE TABLE plans (
    name TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    spec TEXT NOT NULL,
    -- Copied out of `spec` so that the seat checks read it without parsing JSON.
    max_seats INTEGER NOT NULL CHECK (max_seats >= 1),
    created_at TEXT NOT NULL,
    retired_at TEXT,
    PRIMARY KEY (name, version)
);

CREATE TABLE tenants (
    slug TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    owner_email TEXT NOT NULL,
    plan TEXT NOT NULL,
    plan_version INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('trialing', 'active', 'past_due', 'suspended', 'canceled')),
    erp_version TEXT NOT NULL,
    licensed_seats INTEGER NOT NULL CHECK (licensed_seats >= 1),
    provisioning TEXT NOT NULL,
    url TEXT,
    conditions TEXT NOT NULL,
    trial_ends_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    -- Grows with every seat change, so a cache never replaces a newer count with an older one.
    seat_version INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (plan, plan_version) REFERENCES plans (name, version)
);
CREATE INDEX tenants_live_by_plan ON tenants (plan, slug) WHERE deleted_at IS NULL;
CREATE INDEX tenants_created ON tenants (created_at);

CREATE TABLE seats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    email TEXT NOT NULL,
    assigned_at TEXT NOT NULL,
    removed_at TEXT,
    CHECK (removed_at IS NULL OR removed_at >= assigned_at)
);
-- One held seat per user and tenant; also what the current count reads.
CREATE UNIQUE INDEX seats_held ON seats (tenant, email) WHERE removed_at IS NULL;
CREATE INDEX seats_by_time ON seats (tenant, assigned_at);

CREATE TABLE plan_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    from_plan TEXT NOT NULL,
    from_version INTEGER NOT NULL,
    to_plan TEXT NOT NULL,
    to_version INTEGER NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE INDEX plan_changes_by_tenant ON plan_changes (tenant, id);

CREATE TABLE provision_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL REFERENCES tenants (slug),
    op TEXT NOT NULL CHECK (op IN ('apply', 'delete')),
    object TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    locked_until TEXT,
    last_error TEXT,
    done_at TEXT,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX provision_outbox_pending ON provision_outbox (id) WHERE done_at IS NULL AND NOT superseded;
CREATE INDEX provision_outbox_by_tenant ON provision_outbox (tenant, id) WHERE done_at IS NULL AND NOT superseded;

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT
);

CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL REFERENCES events (id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    locked_until TEXT,
    last_error TEXT,
    delivered_at TEXT,
    dead_at TEXT
);
CREATE INDEX deliveries_pending ON deliveries (id) WHERE delivered_at IS NULL AND dead_at IS NULL;
