// Time as the domain sees it: injected, so tests control it.

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
