-- When the tenant's master password was shown, once, to its admin. The password itself lives
-- only in the tenant's Kubernetes Secret; the control plane never stores it.
ALTER TABLE tenants ADD COLUMN password_revealed_at timestamptz;
