# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN python -m venv /opt/relay \
 && /opt/relay/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/relay --create-home relay
COPY --from=build /opt/relay /opt/relay
ENV PATH=/opt/relay/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /var/lib/relay
VOLUME ["/etc/relay", "/var/lib/relay"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s CMD ["relay", "-c", "/etc/relay", "healthcheck", "--mode", "live"]
ENTRYPOINT ["relay", "-c", "/etc/relay"]
CMD ["run"]
