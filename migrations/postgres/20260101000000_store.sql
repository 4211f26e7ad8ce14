-- The control plane's store. Timestamps are written by the application (UTC, microseconds) so
-- that both engines see the same instants.

CREATE TABLE plans (
    name text NOT NULL,
    version bigint NOT NULL CHECK (version >= 1),
    spec jsonb NOT NULL,
    -- Copied out of `spec` so that the seat checks read it without parsing JSON.
    max_seats bigint NOT NULL CHECK (max_seats >= 1),
    created_at timestamptz NOT NULL,
    retired_at timestamptz,
    PRIMARY KEY (name, version)
);

CREATE TABLE tenants (
    slug text PRIMARY KEY,
    display_name text NOT NULL,
    owner_email text NOT NULL,
    plan text NOT NULL,
    plan_version bigint NOT NULL,
    state text NOT NULL CHECK (state IN ('trialing', 'active', 'past_due', 'suspended', 'canceled')),
    erp_version text NOT NULL,
    licensed_seats bigint NOT NULL CHECK (licensed_seats >= 1),
    provisioning text NOT NULL,
    url text,
    conditions jsonb NOT NULL,
    trial_ends_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz,
    -- Grows with every seat change, so a cache never replaces a newer count with an older one.
    seat_version bigint NOT NULL DEFAULT 0,
    FOREIGN KEY (plan, plan_version) REFERENCES plans (name, version)
);
CREATE INDEX tenants_live_by_plan ON tenants (plan, slug) WHERE deleted_at IS NULL;
CREATE INDEX tenants_created ON tenants (created_at);

CREATE TABLE seats (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (slug),
    email text NOT NULL,
    assigned_at timestamptz NOT NULL,
    removed_at timestamptz,
    CHECK (removed_at IS NULL OR removed_at >= assigned_at)
);
-- One held seat per user and tenant; also what the current count reads.
CREATE UNIQUE INDEX seats_held ON seats (tenant, email) WHERE removed_at IS NULL;
CREATE INDEX seats_by_time ON seats (tenant, assigned_at);

CREATE TABLE plan_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (slug),
    from_plan text NOT NULL,
    from_version bigint NOT NULL,
    to_plan text NOT NULL,
    to_version bigint NOT NULL,
    changed_at timestamptz NOT NULL
);
CREATE INDEX plan_changes_by_tenant ON plan_changes (tenant, id);

CREATE TABLE provision_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (slug),
    op text NOT NULL CHECK (op IN ('apply', 'delete')),
    object jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    locked_until timestamptz,
    last_error text,
    done_at timestamptz,
    superseded boolean NOT NULL DEFAULT false
);
CREATE INDEX provision_outbox_pending ON provision_outbox (id) WHERE done_at IS NULL AND NOT superseded;
CREATE INDEX provision_outbox_by_tenant ON provision_outbox (tenant, id) WHERE done_at IS NULL AND NOT superseded;

CREATE TABLE webhook_endpoints (
    id text PRIMARY KEY,
    url text NOT NULL,
    events jsonb NOT NULL,
    sealed_secret bytea NOT NULL,
    created_at timestamptz NOT NULL,
    deleted_at timestamptz
);

CREATE TABLE events (
    id text PRIMARY KEY,
    type text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL REFERENCES events (id),
    endpoint_id text NOT NULL REFERENCES webhook_endpoints (id),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    locked_until timestamptz,
    last_error text,
    delivered_at timestamptz,
    dead_at timestamptz
);
CREATE INDEX deliveries_pending ON deliveries (id) WHERE delivered_at IS NULL AND dead_at IS NULL;
