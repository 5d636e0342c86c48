# dtx in a container: the coordinator, the agent and the command line.
#
#   docker build -t dtx:local .          # what scripts/compose-check and docker-compose.yml use
#
# Two stages. `build` installs the build subset of scripts/setup's Debian
# packages and compiles only dtx, dtx-coordinator and dtx-agent (no tests,
# no benchmarks, no fuzzing, no sanitizers), optimised as scripts/setup's
# build is but without debug information. `runtime` is a bare Debian 12 with
# the shared libraries those three binaries link (libpqxx, libpq, SQLite,
# spdlog, fmt, Boost.JSON, OpenSSL), curl for the health checks (/healthz,
# /readyz) and the sqlite3 and psql clients for the compose cluster's
# one-shot schema step (docker/bank-init). Processes run as the user dtx
# (uid 10001); their data lives under /var/lib/dtx.
#
# No image registry is needed beyond debian:bookworm, which scripts/lib/
# docker-base.sh makes with debootstrap when it is missing.

FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      cmake ninja-build g++ pkg-config \
      libboost1.81-dev libboost-json1.81-dev \
      libpqxx-dev libsqlite3-dev libspdlog-dev libcli11-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the three binaries are built from, so an edit to docs/, tests/
# or scripts/ keeps this stage's cache.
COPY CMakeLists.txt ./
COPY common common
COPY wal wal
COPY rest rest
COPY txn txn
COPY consensus consensus
COPY participant participant
COPY coordinator coordinator
COPY cli cli
COPY bench bench
RUN cmake -S . -B build -G Ninja -DDTX_BUILD_TESTS=OFF -DDTX_BUILD_FUZZ=OFF -DDTX_WERROR=ON \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" >/dev/null \
 && cmake --build build -j "$(nproc)" --target dtx dtx-coordinator dtx-agent \
 && strip build/bin/dtx build/bin/dtx-coordinator build/bin/dtx-agent

FROM debian:bookworm AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libboost-json1.81.0 libfmt9 libspdlog1.10 libpqxx-6.4 libpq5 libsqlite3-0 libssl3 \
      curl sqlite3 postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/dtx --no-create-home dtx \
 && mkdir -p /var/lib/dtx/coordinator /var/lib/dtx/sqlite /etc/dtx \
 && touch /var/lib/dtx/coordinator/NEW-VOLUME \
 && chown -R dtx:dtx /var/lib/dtx
COPY --from=build /src/build/bin/dtx /src/build/bin/dtx-coordinator /src/build/bin/dtx-agent /usr/local/bin/
COPY docker/coordinator-entrypoint docker/bank-init /usr/local/bin/
RUN dtx-coordinator --help >/dev/null && dtx-agent --help >/dev/null && dtx --help >/dev/null
USER dtx
WORKDIR /var/lib/dtx
CMD ["dtx", "--help"]
