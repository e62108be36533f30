import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "gen/", "build/", "node_modules/", "data/", "coverage/", "bench/results/"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "error",
    },
  },
  {
    // The domain depends on nothing but its own ports: no transport, no
    // generated code, no ORM.
    files: ["src/core/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["**/gen/**", "@connectrpc/*", "@bufbuild/*"], message: "core must not depend on the transport or generated code" },
            { group: ["drizzle-orm", "drizzle-orm/*", "postgres", "@electric-sql/*", "**/storage/**"], message: "core must not depend on storage" },
            { group: ["**/rpc/**", "**/server.js", "**/gateway.js", "**/app.js"], message: "core must not depend on the outer layers" },
          ],
        },
      ],
    },
  },
  {
    files: ["test/**/*.ts", "bench/**/*.mjs", "scripts/**/*.mjs"],
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unsafe-function-type": "off",
      "no-console": "off",
    },
  },
);
