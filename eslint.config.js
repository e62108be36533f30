import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "verifier/dist/", "gen/", "build/", "node_modules/", "data/", "coverage/", "bench/results/"] },
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "error",
    },
  },
  {
    // The features depend on nothing but ports: no transport, no generated
    // code, no ORM. Only app/ wires them to storage and transport.
    files: ["src/{shared,accounts,login,sessions,mfa,risk,abuse,audit,admin,notify,keys,tokens,hashing}/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["**/gen/**", "@connectrpc/*", "@bufbuild/*"], message: "features must not depend on the transport or generated code" },
            { group: ["drizzle-orm", "drizzle-orm/*", "postgres", "@electric-sql/*", "**/storage/**"], message: "features must not depend on storage" },
            { group: ["**/transport/**", "**/app/**", "**/config/**"], message: "features must not depend on the outer layers" },
          ],
        },
      ],
    },
  },
  {
    // Storage implements ports (the signing keys': keys/ports.ts) and never
    // reaches into the token logic that uses them.
    files: ["src/storage/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { patterns: [{ group: ["**/tokens/**"], message: "storage must not import tokens/: share through keys/" }] }],
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
