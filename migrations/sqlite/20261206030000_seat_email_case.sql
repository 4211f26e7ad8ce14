-- E-mail addresses are accepted in any case and compared without it: each seat keeps the
-- address as given (domain in lower case) and a folded key that the uniqueness of held seats
-- and every lookup use. Addresses stored so far were all lower case, so the key is the address.
ALTER TABLE seats ADD COLUMN email_key TEXT NOT NULL DEFAULT '';
UPDATE seats SET email_key = lower(email);
DROP INDEX seats_held;
CREATE UNIQUE INDEX seats_held ON seats (tenant, email_key) WHERE removed_at IS NULL;
