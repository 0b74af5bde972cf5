# TFOD Toolkit image: the toolkit in /opt/tfodkit, its locked dependencies in the
# venv /opt/venv, and an empty working directory /opt/tfod for the user's volumes
# (configs/, records/, experiments/...): nothing of the image lives under them.
#
# TF_VARIANT=gpu (default): TensorFlow with NVIDIA's CUDA and cuDNN pip wheels
# (requirements/lock-gpu.txt), matched to that TensorFlow; the host needs only
# the NVIDIA driver and the NVIDIA container runtime (docker run --gpus all, or
# an ECS GPU instance). TF_VARIANT=cpu: the plain lock (requirements/lock.txt).
#
# ENTRYPOINT is train.sh; the same image runs the artifacts sidecar
# (--entrypoint python ... -m tfodkit.artifacts sync).
#   make build [TF_VARIANT=cpu]    docker build -t tfodkit:<git sha> .
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}
ARG TF_VARIANT=gpu

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/tfod \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# ca-certificates for S3 and the zoo over TLS. /opt/tfod and HOME are
# world-writable (sticky, like /tmp) so that `docker run --user <uid>:<gid>`
# can write its training folder, the zoo cache and TensorBoard's files.
# No apt version pin: the base tag fixes the Debian release, and Debian's archive
# drops a superseded version, so an exact pin breaks the build at the next update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "the lock is for Python 3.11: " + sys.version' \
    && python3 -m venv /opt/venv \
    && mkdir -p /opt/tfod /home/tfod \
    && chmod 1777 /opt/tfod /home/tfod \
    && useradd --uid 1000 --home-dir /home/tfod --no-create-home --shell /bin/bash tfod

COPY requirements/lock.txt requirements/lock-gpu.txt requirements/nodeps.txt /opt/tfodkit/requirements/
RUN case "$TF_VARIANT" in \
      gpu) lock="lock-gpu.txt" ;; \
      cpu) lock="lock.txt" ;; \
      *) echo "TF_VARIANT must be gpu or cpu, not '$TF_VARIANT'" >&2; exit 1 ;; \
    esac \
    && pip install --no-cache-dir 'pip==25.3' \
    && pip install --no-cache-dir -r "/opt/tfodkit/requirements/$lock" \
    && pip install --no-cache-dir --no-deps --require-hashes -r /opt/tfodkit/requirements/nodeps.txt \
    && if pip show --quiet opencv-python 2>/dev/null; then echo "opencv-python beside headless" >&2; exit 1; fi \
    && echo /opt/tfodkit > "$(python -c 'import site; print(site.getsitepackages()[0])')/tfodkit.pth" \
    && echo "$TF_VARIANT" > /opt/tfodkit/TF_VARIANT

COPY tfodkit/ /opt/tfodkit/tfodkit/
COPY configs/ /opt/tfodkit/configs/
COPY train.sh readconfig.py predict.py /opt/tfodkit/

# Build-time smoke check: every import, the versions, and one forward pass per
# meta-architecture (on the build machine's CPU), then train.sh's usage. Its own
# HOME, so that the caches it writes (matplotlib, Keras) do not leave root-owned
# folders in the image's HOME that a --user run could not write.
RUN HOME="$(mktemp -d)" python -m tfodkit doctor \
    && HOME="$(mktemp -d)" /opt/tfodkit/train.sh --help >/dev/null \
    && rm -rf /tmp/tmp.* \
    && test -z "$(ls -A /home/tfod)"

WORKDIR /opt/tfod
EXPOSE 6006
ENTRYPOINT ["/opt/tfodkit/train.sh"]
CMD ["--help"]
