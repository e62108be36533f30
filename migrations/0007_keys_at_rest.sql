-- Signing keys and server secrets sealed at rest (AES-256-GCM under the
-- key-encryption keys of KEY_ENCRYPTION_KEYS). Rows written before this
-- migration keep their clear text until the service's next read seals them
-- and clears it in one conditional UPDATE: no manual step.
ALTER TABLE "server_secrets" ALTER COLUMN "value" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "signing_keys" ALTER COLUMN "private_jwk" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "server_secrets" ADD COLUMN "sealed_value" "bytea";--> statement-breakpoint
ALTER TABLE "signing_keys" ADD COLUMN "sealed_private_jwk" "bytea";--> statement-breakpoint
ALTER TABLE "server_secrets" ADD CONSTRAINT "server_secrets_value_check" CHECK (num_nonnulls("server_secrets"."value", "server_secrets"."sealed_value") = 1);--> statement-breakpoint
ALTER TABLE "signing_keys" ADD CONSTRAINT "signing_keys_private_key_check" CHECK (num_nonnulls("signing_keys"."private_jwk", "signing_keys"."sealed_private_jwk") = 1);
