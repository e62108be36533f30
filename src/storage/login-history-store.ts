import { and, eq, sql } from "drizzle-orm";
import type { LoginHistory, LoginHistoryStore } from "../risk/assessor.js";
import { bytes, type Db } from "./db.js";
import { knownDevices, knownNetworks, lastLogins, users } from "./schema.js";

// The risk engine's memory of an account's successful logins: devices (by
// keyed hash), networks and countries, and the last located login. Rows
// never leave this file.

// Countries of known networks considered by the "new country" signal.
const MAX_COUNTRIES = 50;

export function createLoginHistoryStore(db: Db): LoginHistoryStore {
  // One round trip: the user row anchors the left joins (no user, no
  // history), the rest are scalar subqueries.
  const lookup = db
    .select({
      deviceFirstSeenAt: knownDevices.firstSeenAt,
      deviceMfaAt: knownDevices.mfaAt,
      lastAt: lastLogins.at,
      lastCountry: lastLogins.country,
      lastLat: lastLogins.lat,
      lastLon: lastLogins.lon,
      lastAccuracyKm: lastLogins.accuracyKm,
      networkKnown: sql<boolean>`exists (
        select 1 from ${knownNetworks}
        where ${knownNetworks.userId} = ${users.id} and ${knownNetworks.network} = ${sql.placeholder("network")}::text)`,
      // The most recently seen countries first.
      countries: sql<string[]>`array(
        select ${knownNetworks.country} from ${knownNetworks}
        where ${knownNetworks.userId} = ${users.id} and ${knownNetworks.country} is not null
        group by ${knownNetworks.country}
        order by max(${knownNetworks.lastSeenAt}) desc, ${knownNetworks.country}
        limit ${sql.raw(String(MAX_COUNTRIES))})`,
    })
    .from(users)
    .leftJoin(lastLogins, eq(lastLogins.userId, users.id))
    .leftJoin(knownDevices, and(eq(knownDevices.userId, users.id), eq(knownDevices.deviceHash, sql.placeholder("device"))))
    .where(eq(users.id, sql.placeholder("userId")))
    .limit(1)
    .prepare("login_history_lookup");

  return {
    async forgetMfa(userId) {
      await db.update(knownDevices).set({ mfaAt: null }).where(eq(knownDevices.userId, userId));
    },

    async lookup(userId, deviceHash, network): Promise<LoginHistory> {
      const [row] = await lookup.execute({
        userId,
        device: deviceHash === undefined ? null : bytes(deviceHash),
        network: network ?? null,
      });
      if (!row) return { hasHistory: false, networkKnown: false, countries: [] };
      const history: LoginHistory = {
        hasHistory: row.lastAt !== null,
        networkKnown: network !== undefined && row.networkKnown === true,
        countries: row.countries ?? [],
      };
      if (deviceHash !== undefined && row.deviceFirstSeenAt !== null) {
        history.device = row.deviceMfaAt === null ? {} : { mfaAt: row.deviceMfaAt };
      }
      if (row.lastAt !== null) {
        history.last =
          row.lastLat === null || row.lastLon === null
            ? { at: row.lastAt }
            : {
                at: row.lastAt,
                point: {
                  lat: row.lastLat,
                  lon: row.lastLon,
                  ...(row.lastCountry !== null ? { country: row.lastCountry } : {}),
                  ...(row.lastAccuracyKm !== null ? { accuracyKm: row.lastAccuracyKm } : {}),
                },
              };
      }
      return history;
    },

    async record({ userId, deviceHash, network, point, at, mfa }) {
      // One statement: the data-modifying CTEs all run, whether or not the
      // final insert reads them. Times only move forward, so a slow writer
      // of an older login cannot roll the history back.
      const when = at.toISOString();
      const device = deviceHash === undefined ? null : bytes(deviceHash);
      await db.execute(sql`
        with device as (
          insert into ${knownDevices} as d (user_id, device_hash, first_seen_at, last_seen_at, mfa_at)
          select ${userId}::uuid, ${device}::bytea, ${when}::timestamptz, ${when}::timestamptz, ${mfa ? when : null}::timestamptz
          where ${device}::bytea is not null
          on conflict (user_id, device_hash) do update set
            last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at),
            mfa_at = greatest(d.mfa_at, excluded.mfa_at)
          returning 1
        ),
        network as (
          insert into ${knownNetworks} as n (user_id, network, country, first_seen_at, last_seen_at)
          select ${userId}::uuid, ${network ?? null}::text, ${point?.country ?? null}::text, ${when}::timestamptz, ${when}::timestamptz
          where ${network ?? null}::text is not null
          on conflict (user_id, network) do update set
            country = coalesce(excluded.country, n.country),
            last_seen_at = greatest(n.last_seen_at, excluded.last_seen_at)
          returning 1
        )
        insert into ${lastLogins} as l (user_id, at, country, lat, lon, accuracy_km)
        values (${userId}::uuid, ${when}::timestamptz, ${point?.country ?? null}::text, ${point?.lat ?? null}::float8,
                ${point?.lon ?? null}::float8, ${point?.accuracyKm ?? null}::float8)
        on conflict (user_id) do update set
          at = excluded.at, country = excluded.country, lat = excluded.lat, lon = excluded.lon, accuracy_km = excluded.accuracy_km
          where l.at <= excluded.at`);
    },
  };
}
