-- Each environment's status as the operator reports it (name, version, ready, url), mirrored
-- for the tenant console.
ALTER TABLE tenants ADD COLUMN environments TEXT NOT NULL DEFAULT '[]';
