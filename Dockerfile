# Multi-stage build: compile in the Rust image, run in a slim Debian
# image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p otp-server

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/otpd otpd \
 && mkdir -p /var/lib/otpd /etc/otpd \
 && chown otpd /var/lib/otpd
COPY --from=build /src/target/release/otpd /usr/local/bin/otpd
COPY config/ /etc/otpd/
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
# The slim image has no curl: otpd probes its own /readyz (0 ready, 1 not),
# reading the same config and env to find the port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/otpd", "health"]
ENTRYPOINT ["/usr/local/bin/otpd"]
