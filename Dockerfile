# Switchyard's container image: built with the Swift toolchain, run on Debian 12 slim as an
# unprivileged user. See docs/install.md.
#
#   docker build -t switchyard .
#   docker run -p 80:8080 -v $PWD/switchyard.yaml:/etc/switchyard/switchyard.yaml:ro switchyard

FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libevent-dev libssl-dev libsqlite3-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a change in Sources/ reuses the resolved packages' layer.
COPY Package.swift Package.resolved ./
RUN swift package resolve
COPY Sources Sources
COPY Tests Tests
RUN swift build -c release --static-swift-stdlib --product switchyard \
 && strip --strip-unneeded .build/release/switchyard \
 && .build/release/switchyard version

FROM debian:bookworm-slim
# The C libraries the binary links dynamically (the Swift runtime is linked in); the same as
# the .deb's Depends.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libevent-core-2.1-7 libevent-extra-2.1-7 libevent-openssl-2.1-7 \
      libevent-pthreads-2.1-7 libssl3 libsqlite3-0 \
      libstdc++6 zlib1g ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --home-dir /var/lib/switchyard --no-create-home --shell /usr/sbin/nologin switchyard \
 && install -d -o switchyard -g switchyard -m 0750 /var/lib/switchyard /run/switchyard
COPY --from=build /src/.build/release/switchyard /usr/bin/switchyard
COPY conf/docker.yaml /etc/switchyard/switchyard.yaml
USER switchyard
EXPOSE 8080
VOLUME ["/var/lib/switchyard"]
# Healthy while the proxy's admin API answers (its control loop is alive and the configuration loaded).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/bin/switchyard", "ctl", "--admin", "/run/switchyard/admin.sock", "status"]
# SIGTERM: graceful stop within shutdown_timeout (give docker stop a longer -t than that).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/switchyard"]
CMD ["run", "--config", "/etc/switchyard/switchyard.yaml"]
