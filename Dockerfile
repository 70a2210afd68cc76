# distdqn, CPU image: `docker build -t distdqn .` (Dockerfile.cuda is the GPU variant).
# One image runs `distdqn train` on its own and serves as a KubeRay head or worker (`ray` is on PATH).
# tests/test_docker.py checks this file: what it copies exists and is not ignored, the Ray pin comes
# from pyproject.toml, torch is the CPU build pinned as in the Makefile, the runtime user is not root.

ARG PYTHON_VERSION=3.11
# Keep equal to the Makefile's TORCH pin (a test checks).
ARG TORCH_VERSION=2.13.0

# ---- builder: a venv with torch (CPU build), the package and its ray, atari and envpool extras
FROM python:${PYTHON_VERSION}-slim-trixie AS builder
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# torch first, from PyTorch's CPU index: PyPI's Linux torch is the CUDA build, several GB.
RUN /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Ray's version comes from the `ray` extra's exact pin; `ray[default]` only adds the dashboard agent's
# dependencies, whose health endpoints KubeRay's probes query. Naming torch again makes pip fail rather
# than swap in another build should a dependency ever ask for a different torch.
RUN /opt/venv/bin/pip install ".[ray,atari,envpool]" "ray[default]" "torch==${TORCH_VERSION}"

# ---- runtime: the venv and nothing of the build
FROM python:${PYTHON_VERSION}-slim-trixie AS runtime
# wget: KubeRay's default probes run it. tini: a PID 1 that forwards signals and reaps Ray's orphans.
# g++: torch.compile (placement.learner_compile) builds its CPU kernels with it.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends ca-certificates g++ tini wget \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it and volumes can be given to it.
# KubeRay starts Ray through `bash -l`, whose /etc/profile resets PATH: profile.d puts the venv back.
RUN groupadd --gid 1000 distdqn \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash distdqn \
    && echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/distdqn-venv.sh
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0
LABEL org.opencontainers.image.title="distdqn" \
      org.opencontainers.image.description="Deep Q-Networks from one process to a Ray cluster (CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 1000:1000
# Runs go to ./runs; Ray writes /tmp/ray (/tmp is world-writable) and ~/.ray.
WORKDIR /home/distdqn
ENTRYPOINT ["tini", "--", "distdqn"]
CMD ["--help"]
