import { createRequire } from "node:module";

// The common-password list of @zxcvbn-ts/language-common (MIT; about 49,000
// passwords ranked by frequency in public breach corpora). Loaded once,
// lower-cased, into a Set: membership is O(1) per check.
export function loadCommonPasswords(): ReadonlySet<string> {
  const require = createRequire(import.meta.url);
  const { dictionary } = require("@zxcvbn-ts/language-common") as { dictionary: Record<string, string[]> };
  const list = dictionary["passwords-common"];
  if (!list || list.length < 10_000) throw new Error("common-password list missing or too short");
  return new Set(list.map((p) => p.toLowerCase()));
}
