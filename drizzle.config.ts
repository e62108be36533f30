import { defineConfig } from "drizzle-kit";

// `npx drizzle-kit generate` writes a new SQL migration into migrations/
// after src/storage/schema.ts changes. Migrations are append-only.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/storage/schema.ts",
  out: "./migrations",
});
