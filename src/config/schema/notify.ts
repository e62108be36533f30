import { z } from "zod";
import { onceValid, refuse } from "../fields.js";

// The webhook that receives security alerts, signed with its secret.

const env = z.object({
  WEBHOOK_URL: z.string().url().optional(),
  WEBHOOK_SECRET: z.string().min(16).optional(),
});

export const notifySchema = env
  .superRefine((e, ctx) => {
    if (e.WEBHOOK_URL !== undefined && e.WEBHOOK_SECRET === undefined) refuse(ctx, "WEBHOOK_SECRET", "required with WEBHOOK_URL (set both or neither)");
    if (e.WEBHOOK_SECRET !== undefined && e.WEBHOOK_URL === undefined) refuse(ctx, "WEBHOOK_URL", "required with WEBHOOK_SECRET (set both or neither)");
  }, onceValid)
  .transform((e) => ({
    webhook: e.WEBHOOK_URL && e.WEBHOOK_SECRET ? { url: e.WEBHOOK_URL, secret: e.WEBHOOK_SECRET } : undefined,
  }));
