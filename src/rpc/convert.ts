import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  UserInfoSchema,
  UserSchema,
  type User as UserProto,
  type UserInfo,
} from "../../gen/identity/v1/identity_service_pb.js";
import type { ProfileInput } from "../core/profile.js";
import type { User } from "../core/ports.js";

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
    }),
    createTime: timestampFromDate(user.createdAt),
    updateTime: timestampFromDate(user.updatedAt),
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
  };
}
