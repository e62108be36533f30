import { pathToFileURL } from "node:url";

/** What an operator command answers: an exit code and a line for the terminal. */
export interface CommandResult {
  exitCode: number;
  message: string;
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
