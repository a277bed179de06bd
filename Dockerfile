# syntax=docker/dockerfile:1
# One image for `gatrix serve` and `gatrix worker`.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY gatrix ./gatrix
COPY templates ./templates
COPY assets ./assets
COPY migrations ./migrations
# templates, assets and migrations ship inside the wheel as package data
RUN pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GATRIX_HOST=0.0.0.0 \
    PORT=3002 \
    GATRIX_DATA_DIR=/data
RUN groupadd --system gatrix && useradd --system --gid gatrix --home /app gatrix \
    && mkdir -p /data && chown gatrix:gatrix /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER gatrix
VOLUME ["/data"]
EXPOSE 3002
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3002\")}/health', timeout=4)"
ENTRYPOINT ["gatrix"]
CMD ["serve"]
