import { pathToFileURL } from "node:url";
import { ConfigError, loadConfig, type Config } from "../config/config.js";

/** What an operator command answers: an exit code and a line for the terminal. */
export interface CommandResult {
  exitCode: number;
  message: string;
}

/** Runs `body` with the configuration of `env`; a bad configuration is a usage error (exit 2) naming the variable. */
export async function withConfig(
  env: Record<string, string | undefined>,
  body: (config: Config) => Promise<CommandResult>,
): Promise<CommandResult> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return { exitCode: 2, message: err.message };
    throw err;
  }
  return body(config);
}

/**
 * Runs `command` with the process arguments when `moduleUrl` is the script
 * node was started with (so tests can import the command without running it).
 */
export async function runIfMain(moduleUrl: string, command: (args: readonly string[]) => Promise<CommandResult>): Promise<void> {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  const { exitCode, message } = await command(process.argv.slice(2));
  (exitCode === 0 ? process.stdout : process.stderr).write(`${message}\n`);
  process.exitCode = exitCode;
}
