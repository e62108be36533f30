import { defineConfig } from "vitest/config";

export default defineConfig({
  // Workspace packages from their TypeScript sources (the "@platform/source"
  // export condition), as the type-checker sees them: no build needed.
  ssr: { resolve: { conditions: ["@platform/source"] } },
  test: {
    pool: "forks",
    include: ["test/**/*.test.ts", "verifier/test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: integration files each run a server and argon2 hashes.
    maxWorkers: 2,
  },
});
