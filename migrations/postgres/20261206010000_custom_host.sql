-- A production host given by hand (a customer's own domain); NULL means the deployment's
-- generated `<slug>.<domain>`. No two live tenants share one: the test environment's host is
-- derived from it (`a.b.c` -> `a.test.b.c`), so unique production hosts give unique test hosts.
ALTER TABLE tenants ADD COLUMN host TEXT;
CREATE UNIQUE INDEX tenants_live_host ON tenants (host) WHERE host IS NOT NULL AND deleted_at IS NULL;
