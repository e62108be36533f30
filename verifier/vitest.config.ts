import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Runs the verifier's own suite: npx vitest run --config verifier/vitest.config.ts
// (The root is the repository, so caches land in its node_modules.)
export default defineConfig({
  // This package's own entry points from its TypeScript sources, as in the root config.
  ssr: { resolve: { conditions: ["@platform/source"] } },
  test: {
    root: fileURLToPath(new URL("..", import.meta.url)),
    include: ["verifier/test/**/*.test.ts"],
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
