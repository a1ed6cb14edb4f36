#!/bin/sh
# Points the data directory's models/ at the embedder export baked into the image, then runs
# the command. ragserve looks for the exported model in <data dir>/models; a fresh volume
# (compose named volume, Kubernetes emptyDir or PVC) starts empty, and without this link
# every new volume would export the model again (tens of seconds, and torch at run time).
# An existing models/ (a real directory, or a link that still resolves) is left alone.
set -eu

data_dir="${RAGSERVE_DATA_DIR:-/var/lib/ragserve/data}"
baked="${RAGSERVE_MODEL_CACHE:-/opt/ragserve/model-cache/models}"

mkdir -p "$data_dir"
if [ -L "$data_dir/models" ] && [ ! -e "$data_dir/models" ]; then
    # A dangling link (an image with another layout wrote it): point it here again.
    ln -sfn "$baked" "$data_dir/models"
elif [ ! -e "$data_dir/models" ]; then
    ln -s "$baked" "$data_dir/models"
fi

exec "$@"
