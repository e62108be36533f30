CREATE TABLE "audit_chain_head" (
	"id" integer PRIMARY KEY NOT NULL,
	"seq" bigint NOT NULL,
	"hash" "bytea" NOT NULL,
	CONSTRAINT "audit_chain_head_single_row" CHECK ("audit_chain_head"."id" = 1),
	CONSTRAINT "audit_chain_head_hash_check" CHECK (octet_length("audit_chain_head"."hash") = 32)
);
--> statement-breakpoint
ALTER TABLE "audit_events" ADD COLUMN "actor_user_id" uuid;--> statement-breakpoint
ALTER TABLE "audit_events" ADD COLUMN "details" jsonb;--> statement-breakpoint
ALTER TABLE "audit_events" ADD COLUMN "seq" bigint;--> statement-breakpoint
ALTER TABLE "audit_events" ADD COLUMN "prev_hash" "bytea";--> statement-breakpoint
ALTER TABLE "audit_events" ADD COLUMN "hash" "bytea";--> statement-breakpoint
CREATE UNIQUE INDEX "audit_events_seq_key" ON "audit_events" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "audit_events_user_id_id_idx" ON "audit_events" USING btree ("user_id","id");--> statement-breakpoint
CREATE INDEX "audit_events_event_type_id_idx" ON "audit_events" USING btree ("event_type","id");--> statement-breakpoint
CREATE INDEX "audit_events_ip_id_idx" ON "audit_events" USING btree ("ip","id");--> statement-breakpoint
ALTER TABLE "audit_events" ADD CONSTRAINT "audit_events_chain_check" CHECK (("audit_events"."seq" is null and "audit_events"."prev_hash" is null and "audit_events"."hash" is null) or ("audit_events"."seq" > 0 and octet_length("audit_events"."prev_hash") = 32 and octet_length("audit_events"."hash") = 32));--> statement-breakpoint
ALTER TABLE "audit_events" ADD CONSTRAINT "audit_events_details_check" CHECK ("audit_events"."details" is null or jsonb_typeof("audit_events"."details") = 'object');