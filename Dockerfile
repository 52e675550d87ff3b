# syntax=docker/dockerfile:1
# The streamer worker image: `docker build -t streamer:0.1.0 .` (docker-compose.yml does this).
# Two stages so that pip, its caches and build-time files never reach the runtime image.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie
# The Rust toolchain that builds the native record path (streamer._native, from native/; its
# Cargo.toml names the oldest rustc it builds with), pinned; on the same Debian release.
ARG RUST_IMAGE=rust:1.95.0-slim-trixie

FROM ${RUST_IMAGE} AS rust

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# cargo and rustc from the toolchain stage, and the C linker they call; only this stage has them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
RUN cargo --version && rustc --version
RUN python -m venv /opt/streamer
WORKDIR /src
# Dependencies first, from the fully pinned list, so that code changes reuse this layer.
COPY deploy/docker/requirements.txt ./requirements.txt
RUN /opt/streamer/bin/pip install --no-compile -r requirements.txt
# Then the project itself, as the same wheel `pip install .` builds (rules/ and deploy/kafka/ go
# into it as package data, the crate in native/ as streamer._native); --no-deps: everything it
# needs is already pinned above. Without cargo setup.py would leave the native module out and
# the image would run the slower Python path: STREAMER_REQUIRE_NATIVE=1 fails the build instead.
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE CHANGELOG.md ./
COPY native ./native
COPY streamer ./streamer
COPY rules ./rules
COPY deploy/kafka ./deploy/kafka
RUN /opt/streamer/bin/pip wheel --no-deps --wheel-dir /src/dist . \
    && /opt/streamer/bin/pip install --no-compile --no-deps /src/dist/streamer-*.whl \
    && STREAMER_REQUIRE_NATIVE=1 /opt/streamer/bin/python -c \
        "import streamer.native as n; n.check_required(); print('native record path: built')" \
    && /opt/streamer/bin/python -m compileall -q /opt/streamer/lib

FROM ${PYTHON_IMAGE}
ARG STREAMER_UID=10001
RUN groupadd --system --gid "${STREAMER_UID}" streamer \
    && useradd --system --uid "${STREAMER_UID}" --gid streamer --home-dir /var/lib/streamer \
        --shell /usr/sbin/nologin streamer \
    && install -d -o streamer -g streamer -m 0750 /var/lib/streamer
# Code and rules stay owned by root: the worker can read them but not change them.
COPY --from=build /opt/streamer /opt/streamer
# The rules again as plain files at a fixed path, from the same build-context copy: docker-compose
# mounts the repository's rules/ here (live reloads) and deploy/k8s's load-order.txt names them.
COPY --from=build /src/rules /app/rules
ENV PATH=/opt/streamer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMER_RULES_DIR=/app/rules \
    STREAMER_STATE_DIR=/var/lib/streamer \
    STREAMER_METRICS_HOST=0.0.0.0 \
    STREAMER_METRICS_PORT=9464
# Inside a container the metrics endpoint must listen on all of the container's interfaces to be
# scraped; the container's network namespace, not the host, is what that exposes.
EXPOSE 9464
USER streamer
WORKDIR /var/lib/streamer
ENTRYPOINT ["streamer"]
CMD ["worker"]
