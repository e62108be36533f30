-- The audit trail becomes a hash chain: each row carries
-- hash = SHA-256(prev_hash || canonical text of the row), computed here, in
-- the database, so any number of service instances append to one chain.
--
-- Canonical text, version 1: the fields below in this order, each the
-- lower-case hex of its UTF-8 text or "-" for NULL, joined by "|" after the
-- tag "v1". occurred_at is integer epoch microseconds, uuids their lower-case
-- text, details its jsonb::text. src/storage/audit-store.ts renders the same
-- text on its own to verify the chain: change both or neither (or add a v2).
CREATE FUNCTION audit_chain_field(value text) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(encode(convert_to(value, 'UTF8'), 'hex'), '-')
$$;
--> statement-breakpoint
CREATE FUNCTION audit_event_canonical(e audit_events) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT concat_ws('|',
    'v1',
    audit_chain_field(e.seq::text),
    audit_chain_field(e.id::text),
    audit_chain_field((extract(epoch FROM e.occurred_at) * 1000000)::bigint::text),
    audit_chain_field(e.event_type),
    audit_chain_field(e.outcome),
    audit_chain_field(e.reason),
    audit_chain_field(e.user_id::text),
    audit_chain_field(e.actor_user_id::text),
    audit_chain_field(e.session_id::text),
    audit_chain_field(e.ip),
    audit_chain_field(e.user_agent),
    audit_chain_field(e.request_id),
    audit_chain_field(e.details::text))
$$;
--> statement-breakpoint
-- SECURITY DEFINER: the service's role may only SELECT the head (see
-- `npm run grant-service-role`); the chain moves it on the role's behalf.
-- The lock on the head row serialises appends across connections and
-- instances; a rolled-back insert rolls the head back with it (no gaps).
CREATE FUNCTION audit_events_chain() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  head_seq bigint;
  head_hash bytea;
BEGIN
  SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_head WHERE id = 1 FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit_chain_head has no row: the audit chain is broken';
  END IF;
  -- Whatever the INSERT said, the chain columns are the database's.
  NEW.seq := head_seq + 1;
  NEW.prev_hash := head_hash;
  NEW.hash := sha256(head_hash || convert_to(audit_event_canonical(NEW), 'UTF8'));
  UPDATE audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1;
  RETURN NEW;
END;
$$;
--> statement-breakpoint
-- Rows from before the chain are chained now, in id order, so that from here
-- on every row has a hash and a row without one can only have been slipped in
-- with the triggers bypassed. The table stays locked by the ALTER TABLEs of
-- this migration's transaction, so no insert interleaves with the backfill.
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete;
--> statement-breakpoint
DO $$
DECLARE
  r audit_events;
  h bytea := decode(repeat('00', 32), 'hex');
  s bigint := 0;
BEGIN
  FOR r IN SELECT * FROM audit_events ORDER BY id LOOP
    s := s + 1;
    r.seq := s;
    r.prev_hash := h;
    h := sha256(h || convert_to(audit_event_canonical(r), 'UTF8'));
    UPDATE audit_events SET seq = s, prev_hash = r.prev_hash, hash = h WHERE id = r.id;
  END LOOP;
  INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, s, h);
END;
$$;
--> statement-breakpoint
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete;
--> statement-breakpoint
-- BEFORE triggers fire in name order: "zz" makes this one the last, so it
-- hashes the row exactly as it will be stored.
CREATE TRIGGER audit_events_zz_chain BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_chain();
