# syntax=docker/dockerfile:1
# One image for every cellsearch container: the Ray head and GPU workers, the MLflow server
# and the `search` service that launches jobs (see docker-compose.yml).

# A CUDA build of PyTorch. Its torch must satisfy pyproject.toml (torch>=2.13); pick the CUDA
# version your hosts' NVIDIA driver supports.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    RAY_USAGE_STATS_ENABLED=0

WORKDIR /app
COPY . /app

# Keep the base image's CUDA torch: the constraint pins torch to the installed build, so pip
# never swaps it for another download, and it fails loudly if the base is older than the
# project needs instead of quietly installing a second torch.
# The `cluster` extra adds the PostgreSQL driver and Ray's dashboard.
RUN python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/keep-torch.txt \
    && python -m pip install --no-cache-dir --constraint /tmp/keep-torch.txt ".[cluster]" \
    && python -c "import torch, cells, workers, search; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# An unprivileged user; the volumes mounted on /data and /mlartifacts start out owned by it.
RUN useradd --create-home --uid 1000 cellsearch \
    && mkdir -p /data /mlartifacts \
    && chown cellsearch:cellsearch /data /mlartifacts
USER cellsearch

ENV CELLSEARCH_DATA_DIR=/data
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["cellsearch", "--help"]
