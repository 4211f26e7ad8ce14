# syntax=docker/dockerfile:1
# The product's three programs, an image each, from one build of the workspace. Build from the
# repository root, naming the image's stage:
#   docker build --target control-plane   -t tenantry/control-plane:0.1.0 .
#   docker build --target tenant-operator -t tenantry/tenant-operator:0.1.0 .
#   docker build --target erp-agent       -t tenantry/erp-agent:0.1.0 .
# The three share the `build` stage: after the first, the others compile nothing.
# docs/deployment.md explains pushing them and installing the chart; docs/images.md gives the
# ERP agent's contract.

# Where the images take the binaries from: `build`, which compiles them (what providers build),
# or `prebuilt`, binaries compiled already, given as the build context (the test environment's,
# whose test run has just compiled them: docs/images.md).
ARG PROGRAMS=build

FROM rust:1-slim-bookworm AS build
ARG CARGO_PROFILE=release
WORKDIR /src
# Cargo reads every workspace member's manifest, so the whole workspace goes in (.dockerignore
# keeps build output, Git and the docs out). What the programs need at run time is compiled
# into them: the migrations (`migrations/`, sqlx::migrate!), the default plan catalogue
# (control-plane/plans/default.yaml), the pages' CSS and JavaScript (control-plane/assets/),
# SQLite (bundled) and the agent's upgrade catalogue (erp-agent/catalogue/).
COPY . .
# The registry and target caches survive between builds; the binaries are copied out of them.
# One cargo run for the three, so that the shared dependencies are compiled once, with one set
# of features.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile "$CARGO_PROFILE" --locked -p control-plane -p tenant-operator -p erp-agent \
        --bin control-plane --bin tenant-operator --bin tenantry-agent \
 && for program in control-plane tenant-operator tenantry-agent; do \
        install -D -m 0755 "target/$CARGO_PROFILE/$program" "/out/$program"; \
    done \
 && mkdir -p /out/data

# The context is the binaries, named as above, and an empty `data` folder.
FROM scratch AS prebuilt
COPY . /out/

FROM ${PROGRAMS} AS programs

# The control plane: glibc and libgcc, nothing else (no shell, no package manager). Debian 12,
# like the builder.
FROM gcr.io/distroless/cc-debian12:nonroot AS control-plane
COPY --from=programs /out/control-plane /usr/local/bin/control-plane
# `serve` needs a writable data directory (SQLite and generated keys when nothing else is
# configured). The chart mounts an emptyDir over it; a plain `docker run` uses this one.
COPY --from=programs --chown=65532:65532 /out/data /var/lib/tenantry
# The distroless `nonroot` user; the chart's security context asks for the same.
USER 65532:65532
ENV TENANTRY_DATA_DIR=/var/lib/tenantry \
    TENANTRY_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/control-plane"]
CMD ["serve"]

# The tenant operator, on the same base.
FROM gcr.io/distroless/cc-debian12:nonroot AS tenant-operator
COPY --from=programs /out/tenant-operator /usr/local/bin/tenant-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tenant-operator"]
CMD ["run"]

# The ERP agent: Debian 12 with PostgreSQL 15's `pg_dump`, `pg_restore` and `psql`, which the
# agent streams through (`pg_dump` must be of the server's major version or newer; the tenants'
# PostgreSQL is 15). Enough for backups, restores, test copies and exports next to a tenant's
# database.
FROM debian:bookworm-slim AS erp-agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=programs /out/tenantry-agent /usr/local/bin/tenantry-agent
# No user of its own: the agent runs as whatever non-root user the Job asks for (65532 unless
# the files it reads are another user's, e.g. the ERP's file store). Its work (journals, a
# `file://` store, temporary files) goes to the volumes the Job mounts and to /tmp.
USER 65532:65532
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    TENANTRY_AGENT_PG_BIN_DIR=/usr/lib/postgresql/15/bin
ENTRYPOINT ["/usr/local/bin/tenantry-agent"]
CMD ["--help"]
