# syntax=docker/dockerfile:1
# Multi-stage: build with dev dependencies, run with production ones only,
# as a non-root user. The same steps work without Docker:
#   npm ci && npm run build && npm prune --omit=dev && node dist/src/main.js

FROM node:24-slim AS build
WORKDIR /app
# The verifier library is an npm workspace: npm ci needs its manifest, and
# the build compiles it to verifier/dist, which the service imports at run time.
COPY package.json package-lock.json ./
COPY verifier/package.json ./verifier/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY verifier/tsconfig.build.json ./verifier/
COPY verifier/src ./verifier/src
COPY src ./src
COPY gen ./gen
RUN npm run build && npm prune --omit=dev

FROM node:24-slim AS runtime
# With DATABASE_URL, KEY_ENCRYPTION_KEYS is required (docs/operations.md).
# Embedded mode keeps its key file in /var/lib/identity/data.kek, beside the
# data: mount the volume at /var/lib/identity.
ENV NODE_ENV=production PORT=8080 DATA_DIR=/var/lib/identity/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# node_modules/@platform/identity-verifier links to ./verifier.
COPY --from=build /app/verifier/package.json ./verifier/
COPY --from=build /app/verifier/dist ./verifier/dist
COPY package.json ./
COPY migrations ./migrations
RUN mkdir -p /var/lib/identity && chown node:node /var/lib/identity
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
