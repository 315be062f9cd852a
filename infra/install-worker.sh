#!/bin/sh
# The install steps of the container images, in one place.
#
#   sh infra/install-worker.sh SOURCE_DIR VENV_DIR
#
# Both Dockerfiles run exactly this in their builder stage, and tests/test_image_install.py
# runs it in a fresh directory here, so what the images install is what the test checked.
# It is the same as `make`: a virtual environment and a plain (non-editable) `pip install`
# of the project, which packs the bundled fonts/ into gpu_worker/_fonts.
#
# PYTHON picks the interpreter (default python3). Pip options come from the environment:
# the Dockerfiles set PIP_NO_CACHE_DIR=1; the test leaves pip's cache on.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 SOURCE_DIR VENV_DIR" >&2
    exit 2
fi
src=$1
venv=$2
python=${PYTHON:-python3}

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check "$src"
# Fail the build here, not on the first job, when the entry point or a bundled font is missing.
# -I: isolated, so the check sees the installed package, not a gpu_worker/ in the current dir.
"$venv/bin/python" -I - <<'PY'
import importlib.resources
import shutil
import sys

import av  # noqa: F401  (PyAV and its bundled FFmpeg load)

fonts = importlib.resources.files("gpu_worker") / "_fonts"
if not fonts.is_dir():
    sys.exit("install-worker: gpu_worker/_fonts is missing from the installed package")
if shutil.which("gpu-worker", path=sys.prefix + "/bin") is None:
    sys.exit("install-worker: the gpu-worker console script was not installed")
PY
echo "install-worker: installed $src into $venv"
