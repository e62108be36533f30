#!/usr/bin/env node
// Runs `buf lint` (or `buf breaking --against <image>`) on the image built by
// scripts/generate.mjs, limited to our own files: buf cannot resolve the
// protovalidate and google imports offline from source, but an image carries them.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const image = join(root, "build/identity.binpb");
if (!existsSync(image)) execFileSync(process.execPath, [join(root, "scripts/generate.mjs")], { stdio: "inherit" });
const [cmd = "lint", ...rest] = process.argv.slice(2);
const buf = join(root, "node_modules/.bin/buf");
execFileSync(buf, [cmd, image, "--config", join(root, "buf.yaml"), "--path", "identity", ...rest], { stdio: "inherit", cwd: root });
console.log(`buf ${cmd}: clean`);
