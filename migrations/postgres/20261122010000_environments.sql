-- Each environment's status as the operator reports it (name, version, ready, url), mirrored
-- for the tenant console.
ALTER TABLE tenants ADD COLUMN environments jsonb NOT NULL DEFAULT '[]';
