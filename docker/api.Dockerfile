# syntax=docker/dockerfile:1
# wanserve's API and dispatch-only (cpu) worker image: no torch. Build from the repository root:
#   docker build -f docker/api.Dockerfile -t wanserve:0.1.0 .
# Pin the base by digest in production: --build-arg PYTHON_IMAGE=python:3.12.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# postgres: the store; s3: artifacts; kubernetes: PyTorchJobs; ray: the ray backend's client.
# Not engine (torch): tests/deploy/test_dockerfiles.py checks that none of these pulls it in.
ARG EXTRAS=postgres,s3,kubernetes,ray
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/wanserve \
    && /opt/wanserve/bin/pip install --no-cache-dir ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/wanserve/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/wanserve \
    WANSERVE_DATA_DIR=/var/lib/wanserve \
    WANSERVE_API__HOST=0.0.0.0
RUN groupadd --system --gid 10001 wanserve \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/wanserve --create-home \
       --shell /usr/sbin/nologin wanserve
COPY --from=build /opt/wanserve /opt/wanserve
USER 10001:10001
WORKDIR /var/lib/wanserve
EXPOSE 8000
ENTRYPOINT ["wanserve"]
CMD ["api"]
