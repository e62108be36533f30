-- The parameter head of each stored argon2 hash ("argon2id$v=19$m=…,t=…,p=…";
-- NULL for anything else), so the parameter sets in use are found by a loose
-- index scan (src/storage/credential-params.ts) instead of reading every row.
-- IF NOT EXISTS: on a large table, create it beforehand without blocking
-- writes (CREATE INDEX CONCURRENTLY, see docs/operations.md) and this is a no-op.
CREATE INDEX IF NOT EXISTS "password_credentials_phc_params_idx" ON "password_credentials" USING btree ((substring(password_hash from '^\$(argon2(?:id|i|d)\$v=[0-9]+\$[a-z]=[0-9]+(?:,[a-z]=[0-9]+)*)\$')));
