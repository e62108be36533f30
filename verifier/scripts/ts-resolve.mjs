// Lets plain `node` run this package's TypeScript without a build or a
// loader dependency: Node strips the types itself, and this hook maps the
// `.js` specifiers of relative imports (the tsc/nodenext convention) to the
// `.ts` files next to them.
//   node --import ./verifier/scripts/ts-resolve.mjs verifier/bench/verify-throughput.ts
import { existsSync } from "node:fs";
import { registerHooks } from "node:module";
import { fileURLToPath } from "node:url";

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (/^\.\.?\//.test(specifier) && specifier.endsWith(".js") && context.parentURL?.endsWith(".ts")) {
      const candidate = new URL(`${specifier.slice(0, -3)}.ts`, context.parentURL);
      if (existsSync(fileURLToPath(candidate))) return nextResolve(candidate.href, context);
    }
    return nextResolve(specifier, context);
  },
});
