#!/usr/bin/env node
// Generates gen/ from proto/ without the Buf Schema Registry: builds the
// image build/identity.binpb, then runs `buf generate` with buf.gen.yaml
// (local protoc-gen-es), the one configuration of the generated code.
//
// buf/validate/validate.proto ships only as an embedded descriptor inside
// @bufbuild/protovalidate, so it is written out as a FileDescriptorSet and
// handed to protoc with --descriptor_set_in; generated code imports the
// package's copy (map_imports). google/api and google/rpc come from
// google-proto-files; gRPC reflection and health from their npm packages.
// The image holds our files, those third-party ones and every import; it is
// also what `buf lint` checks.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const nm = (p) => join(root, "node_modules", p);
const build = join(root, "build");
mkdirSync(build, { recursive: true });

// 1. buf/validate/validate.proto and its imports, dependencies first.
const files = [];
const seen = new Set();
(function visit(file) {
  if (seen.has(file.name)) return;
  seen.add(file.name);
  for (const dep of file.dependencies) visit(dep);
  files.push(file.proto);
})(file_buf_validate_validate);
const validateSet = join(build, "validate.binpb");
writeFileSync(validateSet, toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files })));

// 2. Third-party sources under their canonical import paths.
const deps = join(build, "deps");
rmSync(deps, { recursive: true, force: true });
const stage = (from, to) => {
  mkdirSync(dirname(join(deps, to)), { recursive: true });
  copyFileSync(from, join(deps, to));
};
for (const f of ["annotations.proto", "http.proto", "field_behavior.proto"]) {
  stage(nm(`google-proto-files/google/api/${f}`), `google/api/${f}`);
}
for (const f of ["error_details.proto", "status.proto"]) stage(nm(`google-proto-files/google/rpc/${f}`), `google/rpc/${f}`);
for (const v of ["v1", "v1alpha"]) {
  stage(nm(`@grpc/reflection/build/proto/grpc/reflection/${v}/reflection.proto`), `grpc/reflection/${v}/reflection.proto`);
}
stage(nm("grpc-health-check/proto/health/v1/health.proto"), "grpc/health/v1/health.proto");

const own = readdirSync(join(root, "proto/identity/v1"))
  .filter((f) => f.endsWith(".proto"))
  .sort()
  .map((f) => `identity/v1/${f}`);
const thirdParty = [
  "google/api/annotations.proto",
  "google/api/http.proto",
  "google/api/field_behavior.proto",
  "google/rpc/error_details.proto",
  "google/rpc/status.proto",
  "grpc/reflection/v1/reflection.proto",
  "grpc/reflection/v1alpha/reflection.proto",
  "grpc/health/v1/health.proto",
];

const protocBin = join(dirname(require.resolve("protoc/package.json")), "protoc.cjs");
const common = [
  protocBin,
  `--descriptor_set_in=${validateSet}`,
  `--proto_path=${join(root, "proto")}`,
  `--proto_path=${deps}`,
];

// 3. The image: own and third-party files plus every import, with source
// info (lint, and the comments of the generated code).
execFileSync(
  process.execPath,
  [...common, "--include_imports", "--include_source_info", `--descriptor_set_out=${join(build, "identity.binpb")}`, ...own, ...thirdParty],
  { stdio: "inherit" },
);

// 4. TypeScript, as buf.gen.yaml says.
execFileSync(nm(".bin/buf"), ["generate"], { stdio: "inherit", cwd: root });
console.log(`generated gen/ from ${own.length} own and ${thirdParty.length} imported files`);
