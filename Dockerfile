# syntax=docker/dockerfile:1
# Build: docker build -t relay .
# Run:   docker run -v "$PWD/config:/etc/relay" -p 3000:3000 relay
#
# Two stages: the first builds a virtualenv with the relay and its wheels, the second
# copies only that virtualenv into a slim image and runs it as an unprivileged user.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN python -m venv /opt/relay \
 && /opt/relay/bin/pip install . \
 && /opt/relay/bin/relay --version

FROM python:3.11-slim
# A fixed UID/GID, so that mounted config and spool volumes can be owned by it.
ARG RELAY_UID=10001
RUN groupadd --system --gid "${RELAY_UID}" relay \
 && useradd --system --no-log-init --uid "${RELAY_UID}" --gid relay \
      --home-dir /var/lib/relay --create-home --shell /usr/sbin/nologin relay \
 && mkdir -p /etc/relay /var/lib/relay/spool \
 && chown -R relay:relay /etc/relay /var/lib/relay
COPY --from=build /opt/relay /opt/relay
# RELAY_CONFIG_DIR is the default of `relay -c`. RELAY_HOST makes the relay reachable from
# outside the container; like every RELAY_ variable it wins over config.yml (`--host` wins
# over it): change it with `docker run -e RELAY_HOST=...`.
ENV PATH=/opt/relay/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RELAY_CONFIG_DIR=/etc/relay \
    RELAY_HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/relay
# /etc/relay: config.yml and credentials.json; /var/lib/relay: the envelope spool
# (set spool.envelopes.path: /var/lib/relay/spool).
VOLUME ["/etc/relay", "/var/lib/relay"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["relay", "healthcheck", "--mode", "live", "--timeout", "4"]
ENTRYPOINT ["relay"]
CMD ["run"]
