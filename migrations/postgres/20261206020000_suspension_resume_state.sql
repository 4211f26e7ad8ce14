-- While a tenant is suspended: the state it had before, which /resume returns it to (so a
-- resumed trial is a trial again, with its end unchanged). NULL when not suspended, and for
-- suspensions made before this column existed (those resume as active, as they used to).
ALTER TABLE tenants ADD COLUMN resumes_as text CHECK (resumes_as IN ('trialing', 'active', 'past_due'));
