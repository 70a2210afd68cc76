# moto's S3 server, for `make cluster-check` (scripts/cluster_check.py): made from the distdqn image,
# so that it needs nothing but what that build already reached. Not for production.
ARG DISTDQN_IMAGE=distdqn
FROM ${DISTDQN_IMAGE}
USER root
COPY docker/build-extras/README.md docker/build-extras/ca.cr[t] docker/build-extras/pip.con[f] /build-extras/
RUN PIP_CONFIG_FILE=/build-extras/pip.conf pip install --no-cache-dir "moto[server]>=5"
USER 1000:1000
ENTRYPOINT ["tini", "--", "moto_server", "--host", "0.0.0.0", "--port", "5000"]
