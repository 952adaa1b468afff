#!/usr/bin/env bash
# Serve the API with gunicorn and run the two django-q2 clusters beside it; Ctrl-C stops all three.
# Listens on 127.0.0.1 unless HOST says otherwise (HOST=0.0.0.0 for every interface): with the development
# settings (DEBUG on, a public key) nobody else on the network should see tracebacks.
#   default cluster: callback deliveries and the every-minute dispatch (short tasks, Q_WORKERS processes)
#   training cluster (Q_CLUSTER_NAME=training, ALT_CLUSTERS in settings): long retraining, one process
set -euo pipefail
port="${1:-8000}"
host="${HOST:-127.0.0.1}"
case "$host" in *:*) [[ "$host" == \[* ]] || host="[${host}]" ;; esac  # an IPv6 address is bracketed for gunicorn
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
py=".venv/bin/python"
"$py" manage.py qcluster &
worker=$!
Q_CLUSTER_NAME=training "$py" manage.py qcluster &
trainer=$!
trap 'kill "$worker" "$trainer" 2>/dev/null || true' EXIT INT TERM
echo "Serving on http://${host}:${port} (API docs: /api/docs/, admin: /admin/); django-q2 workers: default pid ${worker}, training pid ${trainer}"
# django-prometheus' request metrics add up across gunicorn workers only in multiprocess mode, which wants an
# empty directory at every start (docs/operations.md).
metrics_dir="${PROMETHEUS_MULTIPROC_DIR:-$here/data/prometheus-multiproc}"
rm -rf "$metrics_dir" && mkdir -p "$metrics_dir"
PROMETHEUS_MULTIPROC_DIR="$metrics_dir" .venv/bin/gunicorn batterypred.wsgi --bind "${host}:${port}" --workers "${WEB_CONCURRENCY:-3}" \
  --access-logfile - --timeout 30
