# TFOD Toolkit GPU image: TensorFlow's own GPU image (CUDA/cuDNN matching the
# pinned TensorFlow), the toolkit's locked dependencies, the compat layer and
# the scripts. ENTRYPOINT is train.sh; the same image runs the artifacts
# sidecar (entrypoint override: python -m tfodkit.artifacts sync).
#   make build            docker build -t tfodkit:<git sha> .
ARG BASE_IMAGE=tensorflow/tensorflow:2.20.0-gpu
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHON=python3 \
    PYTHONPATH=/opt/tfod
WORKDIR /opt/tfod

# The same lock as the CPU venv and CI. TensorFlow 2.20.0 is already in the
# base image; pip keeps it and installs the rest at the locked versions.
COPY requirements/lock.txt requirements/nodeps.txt requirements/
RUN python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "the lock is for Python 3.11: " + sys.version' \
    && python3 -m pip install --no-cache-dir -r requirements/lock.txt \
    && python3 -m pip install --no-cache-dir --no-deps --require-hashes -r requirements/nodeps.txt \
    && if python3 -m pip show --quiet opencv-python 2>/dev/null; then echo "opencv-python beside headless" >&2; exit 1; fi \
    && if ! command -v python >/dev/null; then ln -s "$(command -v python3)" /usr/local/bin/python; fi

COPY tfodkit/ tfodkit/
COPY configs/ configs/
COPY train.sh readconfig.py predict.py ./

# Build-time smoke check: every import, the versions, and one forward pass per
# meta-architecture (on the build machine's CPU).
RUN python3 -m tfodkit doctor && ./train.sh --help >/dev/null

EXPOSE 6006
ENTRYPOINT ["/opt/tfod/train.sh"]
CMD ["--help"]
