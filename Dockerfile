# syntax=docker/dockerfile:1
# Encore edge node (encore-origin is in the same image).
#   docker build -t encore .
#   docker run -p 8080:8080 -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... \
#     -v /srv/encore/edge.toml:/etc/encore/edge.toml:ro encore
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY origin ./origin
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home encore \
    && mkdir -p /var/cache/encore /etc/encore \
    && chown encore /var/cache/encore
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/encore-*.whl \
    && rm -rf /wheels
COPY config/edge.example.toml /etc/encore/edge.toml
COPY config/regions /etc/encore/regions
ENV ENCORE_CACHE__DISK_PATH=/var/cache/encore \
    PYTHONUNBUFFERED=1
VOLUME ["/var/cache/encore"]
USER 10001
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["encore-edge"]
CMD ["serve", "--config", "/etc/encore/edge.toml"]
