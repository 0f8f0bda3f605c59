# syntax=docker/dockerfile:1
#
# One image with all four Agora services; the container's command chooses which one runs:
#   docker build -t agora .                               # default service: command-api
#   docker build -t agora --build-arg SERVICE=agora-projector .
#   docker run --rm agora agora-query-api                 # any binary, whatever the default
# deploy/docker-compose.yml builds this image once per service and sets `command:`.
# Needs BuildKit (the default builder of Docker 23+) for the cache mounts below.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
# rdkafka builds its bundled librdkafka with configure + make (cmake only matters if its
# `cmake-build` feature is ever turned on).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ live in BuildKit cache mounts, so a rebuild after a
# source change recompiles only the workspace crates. target/ is not part of the image layer,
# so the binaries are copied out within the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p agora-command-api -p agora-projector -p agora-query-api -p agora-realtime \
 && mkdir -p /out \
 && cp target/release/agora-command-api target/release/agora-projector \
       target/release/agora-query-api target/release/agora-realtime /out/

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates for TLS to managed Kafka/MongoDB/Redis; curl for container healthchecks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 agora \
 && useradd --system --uid 10001 --gid agora --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin agora
COPY --from=builder /out/ /usr/local/bin/
# The service started when no command is given: one of agora-command-api, agora-projector,
# agora-query-api, agora-realtime.
ARG SERVICE=agora-command-api
RUN test -x "/usr/local/bin/${SERVICE}" \
 && ln -s "/usr/local/bin/${SERVICE}" /usr/local/bin/agora-service
# In a container the services must listen on every interface, not the loopback default.
ENV AGORA_COMMAND_ADDR=0.0.0.0:8081 \
    AGORA_QUERY_ADDR=0.0.0.0:8082 \
    AGORA_REALTIME_ADDR=0.0.0.0:8083 \
    AGORA_PROJECTOR_ADDR=0.0.0.0:8084 \
    AGORA_LOG_FORMAT=json
EXPOSE 8081 8082 8083 8084
USER 10001:10001
# SIGTERM starts the services' graceful shutdown (AGORA_SHUTDOWN_TIMEOUT_MS).
STOPSIGNAL SIGTERM
CMD ["agora-service"]
