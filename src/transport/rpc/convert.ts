import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Role as RoleProto,
  SessionSchema,
  UserInfoSchema,
  UserSchema,
  VerifyTokenResponseSchema,
  type Session as SessionProto,
  type User as UserProto,
  type UserInfo,
  type VerifyTokenResponse,
} from "../../../gen/identity/v1/identity_service_pb.js";
import type { TokenIntrospection } from "../../sessions/authenticate.js";
import type { SessionView } from "../../sessions/session-control.js";
import type { ProfileInput } from "../../accounts/profile.js";
import type { Role, User } from "../../accounts/ports.js";

// proto ⇄ domain. Nothing here decides anything.

export function userToProto(user: User): UserProto {
  const p = user.profile;
  return create(UserSchema, {
    userId: user.id,
    email: user.email,
    infoUser: create(UserInfoSchema, {
      name: p.name,
      phoneNumber: p.phoneNumber,
      dateOfBirth: p.dateOfBirth,
      gender: p.gender,
      address: p.address,
      locale: p.locale,
    }),
    createTime: timestampFromDate(user.createdAt),
    updateTime: timestampFromDate(user.updatedAt),
    emailVerified: user.emailVerified,
    pendingEmail: user.pendingEmail ?? "",
  });
}

export function profileInputFromProto(info: UserInfo | undefined): ProfileInput {
  if (!info) return {};
  return {
    name: info.name,
    phoneNumber: info.phoneNumber,
    dateOfBirth: info.dateOfBirth,
    gender: info.gender,
    address: info.address,
    locale: info.locale,
  };
}

// A new role fails to compile here instead of going out as UNSPECIFIED.
const roleToProto = {
  customer: RoleProto.CUSTOMER,
  admin: RoleProto.ADMIN,
} as const satisfies Record<Role, RoleProto>;

export function sessionToProto(s: SessionView): SessionProto {
  return create(SessionSchema, {
    sessionId: s.id,
    createTime: timestampFromDate(s.createdAt),
    lastUsedTime: timestampFromDate(s.lastUsedAt),
    expireTime: timestampFromDate(s.expiresAt),
    ip: s.ip ?? "",
    userAgent: s.userAgent ?? "",
    current: s.current,
  });
}

export function introspectionToProto(t: TokenIntrospection): VerifyTokenResponse {
  if (!t.active) return create(VerifyTokenResponseSchema, { active: false });
  return create(VerifyTokenResponseSchema, {
    active: true,
    userId: t.userId,
    sessionId: t.sessionId,
    // Tokens issued before roles existed carry none.
    role: t.role ? roleToProto[t.role] : RoleProto.UNSPECIFIED,
    expireTime: timestampFromDate(t.expiresAt),
    issueTime: timestampFromDate(t.issuedAt),
    tokenId: t.tokenId,
    authTime: t.authTime ? timestampFromDate(t.authTime) : undefined,
    amr: t.amr ? [...t.amr] : [],
    acr: t.acr ?? "",
  });
}
