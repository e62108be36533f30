import { loadConfig } from "./config/config.js";
import { openDatabase } from "./storage/db.js";

// `npm run migrate`: applies pending migrations and exits (the service also
// applies them at start, under an advisory lock).
const config = loadConfig();
const database = await openDatabase(config.database, { migrate: true });
await database.close();
process.stdout.write(`migrations applied (${database.kind})\n`);
