#!/usr/bin/env bash
# Copy the pins of infra/images.env into the places that need a literal default:
# the PYTHON_IMAGE ARG of both Dockerfiles and the AdotImage default of the template.
#
#   infra/pin-images.sh          # after editing infra/images.env
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=infra/images.env
. "$here/images.env"

for dockerfile in "$root/Dockerfile.cpu" "$root/Dockerfile.cuda"; do
    sed -i -E "s|^ARG PYTHON_IMAGE=.*$|ARG PYTHON_IMAGE=${PYTHON_IMAGE}|" "$dockerfile"
done
# The AdotImage parameter's Default is the line after `AdotImage:` and `Type: String`.
sed -i -E "/^  AdotImage:$/,/^    Default:/ s|^    Default: .*$|    Default: ${ADOT_IMAGE}|" \
    "$here/template.yaml"
echo "pin-images: PYTHON_IMAGE=${PYTHON_IMAGE}"
echo "pin-images: ADOT_IMAGE=${ADOT_IMAGE}"
