import type { Catalogue, NoticeEvent } from "./catalogue.js";

const notices: Record<NoticeEvent, { subject: string; line: string }> = {
  new_device_login: { subject: "New sign-in to your account", line: "Your account was signed in to from a device or place we had not seen before." },
  password_changed: { subject: "Your password was changed", line: "The password of your account was changed." },
  password_reset: { subject: "Your password was reset", line: "The password of your account was reset with a link from a reset mail. Every device was signed out." },
  mfa_enabled: { subject: "Two-step verification is on", line: "An authenticator app was added to your account: logins now ask for its code." },
  mfa_disabled: { subject: "Two-step verification was turned off", line: "Two-step verification was turned off for your account." },
  mfa_enrollment_started: { subject: "An authenticator is being added", line: "Someone started adding an authenticator app to your account." },
  recovery_codes_regenerated: { subject: "New recovery codes", line: "New recovery codes were made for your account; the old ones no longer work." },
  email_changed: { subject: "Your e-mail address was changed", line: "The e-mail address of your account was changed." },
  account_locked: { subject: "Your account was locked", line: "Too many wrong passwords were tried on your account, so logins are paused for a while." },
};

const notYou = "If this was not you, reset your password now and check your account's devices.";

export const en: Catalogue = {
  verify_email: (v) => ({
    subject: "Confirm your e-mail address",
    paragraphs: [`Please confirm that this address belongs to you, for your ${v.appName} account.`],
    action: v.link ? { label: "Confirm my address", url: v.link } : undefined,
    footer: [`The link works for ${v.validFor ?? "24 hours"}.`, "If you did not create an account or change your address, you can ignore this mail."],
  }),
  registration_attempt: (v) => ({
    subject: "Someone tried to sign up with your address",
    paragraphs: [
      `Someone tried to create a new ${v.appName} account with this e-mail address, which already has an account.`,
      "If it was you, log in instead, or reset your password if you forgot it.",
    ],
    action: v.link ? { label: "Log in", url: v.link } : undefined,
    footer: ["If it was not you, nothing changed and you can ignore this mail."],
  }),
  password_reset: (v) => ({
    subject: "Reset your password",
    paragraphs: [`Someone (hopefully you) asked to reset the password of your ${v.appName} account.`],
    action: v.link ? { label: "Choose a new password", url: v.link } : undefined,
    footer: [`The link works once, for ${v.validFor ?? "30 minutes"}.`, "If you did not ask for this, ignore this mail: your password stays as it is."],
  }),
  email_login: (v) => ({
    subject: `Your ${v.appName} login link`,
    paragraphs: [`Use the button to log in to your ${v.appName} account, or enter this code where you asked for it:`],
    code: v.code,
    action: v.link ? { label: "Log in", url: v.link } : undefined,
    footer: [
      `The link and the code work once, for ${v.validFor ?? "15 minutes"}.${v.ip ? ` Requested from ${v.ip}${v.at ? ` at ${v.at}` : ""}.` : ""}`,
      "Never give this code to anyone, and never enter it on another site. If you did not ask for it, ignore this mail.",
    ],
  }),
  email_change_notice: (v) => ({
    subject: "Your e-mail address is being changed",
    paragraphs: [
      `Someone asked to change the e-mail address of your ${v.appName} account to ${v.newEmail ?? "another address"}.`,
      "If this was not you, undo the change: it restores this address and signs every device out.",
    ],
    action: v.link ? { label: "Undo the change", url: v.link } : undefined,
    footer: [`The link works for ${v.validFor ?? "7 days"}.`],
  }),
  security_notice: (v) => {
    const n = notices[v.event as NoticeEvent] ?? { subject: "Security notice", line: "Something changed in your account's security settings." };
    const where = v.ip ? ` (from ${v.ip}${v.at ? `, ${v.at}` : ""})` : v.at ? ` (${v.at})` : "";
    return { subject: n.subject, paragraphs: [`${n.line}${where}`], footer: [notYou] };
  },
};
