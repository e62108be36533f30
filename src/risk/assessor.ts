import { createHmac, randomBytes } from "node:crypto";
import { assessRisk, travel, type RiskAssessment, type RiskSignals, type RiskThresholds } from "./engine.js";
import { networkPrefix, type GeoLocator, type GeoPoint } from "./geo.js";

// Login risk: signals from the account's history (devices, networks,
// countries, the last located login) and the abuse defences, scored by the
// pure engine in risk/engine.ts. History is written only after a complete
// successful login, so a failed or abandoned attempt never makes a device
// or network "known".

export interface LoginHistory {
  /** Any successful login on record. */
  hasHistory: boolean;
  /** The presented device, when it logged in before; `mfaAt` when it passed MFA. */
  device?: { mfaAt?: Date | undefined } | undefined;
  networkKnown: boolean;
  countries: readonly string[];
  last?: { at: Date; point?: GeoPoint | undefined } | undefined;
}

export interface LoginHistoryStore {
  /** No device of the user may skip MFA any more (the factors or the password changed). */
  forgetMfa(userId: string): Promise<void>;
  lookup(userId: string, deviceHash: Uint8Array | undefined, network: string | undefined): Promise<LoginHistory>;
  record(input: {
    userId: string;
    deviceHash?: Uint8Array | undefined;
    network?: string | undefined;
    point?: GeoPoint | undefined;
    at: Date;
    mfa: boolean;
  }): Promise<void>;
}

export interface RiskContext {
  userId: string;
  deviceHash?: Uint8Array | undefined;
  network?: string | undefined;
  point?: GeoPoint | undefined;
  history: LoginHistory;
  signals: RiskSignals;
  assessment: RiskAssessment;
}

export interface RiskDeps {
  history: LoginHistoryStore;
  geo: GeoLocator;
  thresholds: RiskThresholds;
  /** Key of device-id hashes (a shared server secret). */
  hashKey: Uint8Array;
  sourceFlagged(ip: string | undefined): Promise<boolean>;
}

export interface RiskAssessor {
  deviceHash(deviceId: string | undefined): Uint8Array | undefined;
  /** A new device token: a random secret the client keeps; only its keyed hash is stored. */
  newDeviceToken(): { token: string; hash: Uint8Array };
  forgetMfa(userId: string): Promise<void>;
  /** Whether a login from this device (by hash) is the account's first, or a new device's. */
  novelty(userId: string, deviceHash: Uint8Array | undefined): Promise<{ firstLogin: boolean; newDevice: boolean }>;
  assess(input: { userId: string; deviceId?: string | undefined; ip?: string | undefined; failuresBefore: number; now: Date }): Promise<RiskContext>;
  /** After a complete successful login: the device, network and place become known. */
  remember(input: { userId: string; deviceHash?: Uint8Array | undefined; ip?: string | undefined; at: Date; mfa: boolean }): Promise<void>;
}

const DEVICE_TOKEN_BYTES = 32;
/** The shape of every device token this service issues (32 random bytes, base64url). */
export const DEVICE_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export function createRiskAssessor(deps: RiskDeps): RiskAssessor {
  const deviceHash = (deviceId: string | undefined) =>
    deviceId === undefined || deviceId === "" ? undefined : createHmac("sha256", deps.hashKey).update("device-token\0").update(deviceId).digest();

  return {
    deviceHash,

    newDeviceToken() {
      const token = randomBytes(DEVICE_TOKEN_BYTES).toString("base64url");
      return { token, hash: deviceHash(token)! };
    },

    forgetMfa: (userId) => deps.history.forgetMfa(userId),

    async novelty(userId, device) {
      const history = await deps.history.lookup(userId, device, undefined);
      return { firstLogin: !history.hasHistory, newDevice: history.device === undefined };
    },


    async assess(input) {
      const device = deviceHash(input.deviceId);
      const network = input.ip === undefined ? undefined : networkPrefix(input.ip);
      const point = input.ip === undefined ? undefined : deps.geo.locate(input.ip);
      const [history, flaggedSource] = await Promise.all([
        deps.history.lookup(input.userId, device, network),
        deps.sourceFlagged(input.ip),
      ]);
      const last = history.last;
      const signals: RiskSignals = {
        newDevice: history.device === undefined,
        newNetwork: network !== undefined && !history.networkKnown,
        newCountry: point?.country !== undefined && !history.countries.includes(point.country),
        impossibleTravel:
          last?.point && point ? travel({ point: last.point, at: last.at }, { point, at: input.now }, deps.thresholds.maxTravelSpeedKmh) : undefined,
        recentFailures: input.failuresBefore,
        flaggedSource,
        firstLogin: !history.hasHistory,
      };
      return { userId: input.userId, deviceHash: device, network, point, history, signals, assessment: assessRisk(signals, deps.thresholds) };
    },

    remember: ({ userId, deviceHash: device, ip, at, mfa }) =>
      deps.history.record({
        userId,
        deviceHash: device,
        network: ip === undefined ? undefined : networkPrefix(ip),
        point: ip === undefined ? undefined : deps.geo.locate(ip),
        at,
        mfa,
      }),
  };
}
