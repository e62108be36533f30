import { ConfigError, loadConfig } from "../../src/config/config.js";
import { expectThrown } from "./thrown.js";

/** The ConfigError loadConfig throws for `env`. */
export function configError(env: Record<string, string | undefined>): ConfigError {
  return expectThrown(ConfigError, () => loadConfig(env));
}

/**
 * The variables a ConfigError names. ConfigError carries no structured field,
 * so the "NAME: problem" lines are the contract operators read at boot.
 */
export function namedVariables(err: ConfigError): string[] {
  return [...err.message.matchAll(/^\s+([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!);
}
