import type { UserStore } from "../accounts/ports.js";
import type { Composer } from "../mail/dispatcher.js";
import { mailEntry, type OnQueued } from "../mail/outbox.js";
import type { OutboxStore } from "../mail/ports.js";
import { isNoticeEvent, noticeEvents } from "../mail/templates/catalogue.js";
import type { AlertSink, SecurityAlert } from "./ports.js";

// Security notices by mail: the alerts that concern one user's account
// (new-device login, credential changes, address changed, account locked)
// become a mail to that user through the outbox, beside the webhook. A
// password reset writes its notice in its own transaction instead.

const MAILED: ReadonlySet<string> = new Set(noticeEvents.filter((e) => e !== "password_reset"));

/** Alerts to every sink (the webhook and the mail notices). */
export function combineAlertSinks(...sinks: AlertSink[]): AlertSink {
  return {
    notify(alert) {
      for (const sink of sinks) sink.notify(alert);
    },
  };
}

export function createMailNotices(deps: { outbox: Pick<OutboxStore, "enqueue">; onQueued: OnQueued; onError(err: unknown): void }): AlertSink {
  return {
    notify(alert: SecurityAlert) {
      if (!alert.userId || !MAILED.has(alert.type)) return;
      const params: Record<string, string> = { event: alert.type, at: alert.at.toISOString() };
      if (typeof alert.details.ip === "string" && alert.details.ip !== "") params.ip = alert.details.ip;
      const entry = mailEntry("security_notice", alert.at, { userId: alert.userId }, params);
      // Senders never wait on notices.
      deps.outbox.enqueue(entry).then(deps.onQueued, deps.onError);
    },
  };
}

export function securityNoticeComposer(deps: { users: Pick<UserStore, "get"> }): Composer {
  return async (message) => {
    const user = message.userId ? await deps.users.get(message.userId) : undefined;
    if (!user) return { drop: "no account" };
    const event = message.params.event ?? "";
    if (!isNoticeEvent(event)) return { drop: `no template for ${event}` };
    return { to: user.email, locale: user.profile.locale, vars: { event, ip: message.params.ip, at: message.params.at } };
  };
}
