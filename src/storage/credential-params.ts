import { sql, type SQL } from "drizzle-orm";
import { rowsOf, type Db } from "./db.js";
import { PHC_PARAMS_EXPRESSION } from "./schema.js";

/** More distinct heads than this are not parameter sets but something else (unversioned or foreign hashes). */
export const MAX_PARAM_SETS = 32;

/** The loose-index-scan query behind passwordHashParamHeads (exported for its plan test). */
export function paramHeadsQuery(limit: number): SQL {
  const head = sql.raw(PHC_PARAMS_EXPRESSION);
  return sql`
    with recursive heads(head, n) as (
      (select ${head}, 1 from password_credentials order by ${head} limit 1)
      union all
      select (select ${head} from password_credentials where ${head} > heads.head order by ${head} limit 1), heads.n + 1
      from heads
      where heads.head is not null and heads.n < ${limit}::int
    )
    select head from heads where head is not null`;
}

/**
 * The distinct parameter heads of stored password hashes
 * ("argon2id$v=19$m=19456,t=2,p=1"), in index order, at most `limit`.
 *
 * A loose index scan: each step of the recursive CTE asks the expression
 * index for the first head greater than the last one, so the work is one
 * index descent per distinct head, not a read of every credential
 * (PostgreSQL does not plan SELECT DISTINCT that way by itself). The
 * expression must stay exactly the index's for the planner to use it.
 */
export async function passwordHashParamHeads(db: Db, limit = MAX_PARAM_SETS): Promise<string[]> {
  return rowsOf<{ head: string }>(await db.execute(paramHeadsQuery(limit))).map((r) => r.head);
}
