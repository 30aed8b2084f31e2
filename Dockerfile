# baton: one node per container. Configure it with BATON_* variables (see README.md, Configuration).
#   docker build -t baton .
FROM node:20-bookworm-slim

# ffmpeg transcodes every live stream
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# a node in a container is reached on the container's network (by the balancer), not on its loopback
ENV NODE_ENV=production BATON_NODE_BIND=0.0.0.0

# dependencies first, so a change of source alone reuses this layer; tsx (the TypeScript loader) is a
# runtime dependency, so --omit=dev keeps it
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY src/ src/
COPY tools/ tools/
COPY config/ config/
COPY assets/ assets/
COPY scripts/ scripts/

# var/ holds the spool (transcode.spoolDir); the node runs as the image's unprivileged "node" user (uid 1000)
RUN mkdir -p var/spool && chown -R node:node var
# the commit nodes register as their release (there is no .git in the image): docker build --build-arg
# BATON_COMMIT=$(git rev-parse HEAD) .
ARG BATON_COMMIT=unknown
ENV BATON_COMMIT=$BATON_COMMIT
USER node

# RTMP ingest, HTTP (HLS, APIs, /healthz, /readyz, /metrics), HAProxy agent-check
EXPOSE 1935 8080 9999

HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# SIGTERM drains the node (hands viewers and publishers to other nodes) and it exits 0 when drained
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "src/bin/baton.ts", "node"]
