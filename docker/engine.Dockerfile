# syntax=docker/dockerfile:1
# wanserve's engine image: CUDA torch and diffusers, for gpu workers (local backend), PyTorchJob
# pods, RayService replicas and the KServe model server (kubernetes.image). The Linux x86_64
# torch wheels of the package index carry their CUDA libraries; the GPU driver comes from the
# node. Built in CI where a Docker engine runs, from the repository root:
#   docker build -f docker/engine.Dockerfile -t wanserve-engine:0.1.0 .
# Pin the base by digest in production: --build-arg PYTHON_IMAGE=python:3.12.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=all
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
    HF_HUB_OFFLINE=1 \
    WANSERVE_DATA_DIR=/var/lib/wanserve \
    WANSERVE_ENGINE__DEVICE=cuda
RUN groupadd --system --gid 10001 wanserve \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/wanserve --create-home \
       --shell /usr/sbin/nologin wanserve
COPY --from=build /opt/wanserve /opt/wanserve
USER 10001:10001
WORKDIR /var/lib/wanserve
ENTRYPOINT ["wanserve"]
CMD ["worker"]
