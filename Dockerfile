# otpd's image: compile in the Rust image, run in a slim Debian image as a
# non-root user. `docker build -t otpd .` builds the last stage, `image`.
#
# The base images are build arguments only so that a machine without an
# image registry can substitute local stand-ins of the same images
# (scripts/image-test.sh does); a normal build never sets them.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- runtime: the final image without the binary ---------------------------
# Both images below (the real one and `prebuilt`) start from this stage, so
# what the image test checks (user, env, volume, health check, signal) is
# the same for both by construction.
FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/otpd otpd \
 && mkdir -p /var/lib/otpd /etc/otpd \
 && chown otpd /var/lib/otpd
COPY config/ /etc/otpd/
# VERSION must match the workspace version (scripts/image-test.sh compares
# it with `otpd --version`); a release build passes SOURCE, the repository
# URL, which this project does not hard-code.
ARG VERSION=0.1.0
ARG SOURCE=
LABEL org.opencontainers.image.title="otpd" \
      org.opencontainers.image.description="Self-hosted one-time-password service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"
USER otpd
WORKDIR /var/lib/otpd
# In a container otpd must listen beyond loopback; set HTTP_AUTH_USERNAME
# and HTTP_AUTH_PASSWORD (otpd warns when auth is off) and put TLS in front.
# Metrics (GET /metrics, no auth) get their own port: publish it only to
# the network Prometheus scrapes from, or set OTP_METRICS__LISTEN="" to
# turn them off.
ENV OTP_SERVER__LISTEN=0.0.0.0:8080 \
    OTP_METRICS__LISTEN=0.0.0.0:9464 \
    OTP_STORE__PATH=/var/lib/otpd/otpd.redb
VOLUME ["/var/lib/otpd"]
EXPOSE 8080 9464
# otpd drains on SIGTERM: it stops accepting, lets in-flight requests
# finish (server.shutdown_timeout_secs, 10 s) and exits 0. Give `docker
# stop` a longer grace period than that (`--time 15`, compose's
# stop_grace_period) or a slow drain ends in SIGKILL.
STOPSIGNAL SIGTERM
# The slim image has no curl: otpd probes its own /readyz (0 ready, 1 not),
# reading the same config and env to find the port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/otpd", "health"]
ENTRYPOINT ["/usr/local/bin/otpd"]

# ---- prebuilt: the runtime with a binary built outside ----------------------
# For machines that cannot run the build stage (scripts/image-test.sh: no
# registry serves rust:1-bookworm there). The binary comes from a named
# build context, a directory that holds only `otpd` (a release build for
# Debian bookworm's glibc):
#   docker buildx build --target prebuilt --build-context otpd-bin=DIR .
# It sits before the build stage so that builders which run every stage
# up to the target never need the Rust image.
FROM runtime AS prebuilt
COPY --from=otpd-bin otpd /usr/local/bin/otpd

# ---- build ------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, in a layer of their own: the manifests and empty
# crates compile every dependency, and that layer is reused until
# Cargo.toml or Cargo.lock changes. One line per workspace crate (a crate
# missing here fails the build; scripts/deploy-check.sh checks the list).
COPY Cargo.toml Cargo.lock ./
COPY crates/otp-config/Cargo.toml crates/otp-config/
COPY crates/otp-delivery/Cargo.toml crates/otp-delivery/
COPY crates/otp-domain/Cargo.toml crates/otp-domain/
COPY crates/otp-events/Cargo.toml crates/otp-events/
COPY crates/otp-gateway/Cargo.toml crates/otp-gateway/
COPY crates/otp-http/Cargo.toml crates/otp-http/
COPY crates/otp-listener/Cargo.toml crates/otp-listener/
COPY crates/otp-redis/Cargo.toml crates/otp-redis/
COPY crates/otp-server/Cargo.toml crates/otp-server/
COPY crates/otp-smtp/Cargo.toml crates/otp-smtp/
COPY crates/otp-store-embedded/Cargo.toml crates/otp-store-embedded/
COPY crates/otp-telegram/Cargo.toml crates/otp-telegram/
COPY crates/otp-telemetry/Cargo.toml crates/otp-telemetry/
COPY crates/otp-testkit/Cargo.toml crates/otp-testkit/
COPY crates/otp-twilio-verify/Cargo.toml crates/otp-twilio-verify/
RUN for c in crates/*/; do mkdir -p "$c/src" && : > "$c/src/lib.rs"; done \
 && echo 'fn main() {}' > crates/otp-server/src/main.rs \
 && mkdir -p tests/e2e && : > tests/e2e/main.rs \
 && cargo build --release --locked -p otp-server \
 && rm -rf crates tests
COPY . .
# COPY keeps the sources' modification times, which are older than the
# stubs' build: touch them so cargo rebuilds the workspace crates (the
# stub's main prints nothing, so the last line fails on a stale binary).
RUN find crates tests -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p otp-server \
 && ./target/release/otpd --version | grep '^otpd '

# ---- image: what `docker build -t otpd .` gives -----------------------------
FROM runtime AS image
COPY --from=build /src/target/release/otpd /usr/local/bin/otpd
