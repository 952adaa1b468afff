#!/usr/bin/env bash
# Serve the API with gunicorn and run the django-q2 worker beside it; Ctrl-C stops both.
set -euo pipefail
port="${1:-8000}"
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
py=".venv/bin/python"
"$py" manage.py qcluster &
worker=$!
trap 'kill "$worker" 2>/dev/null || true' EXIT INT TERM
echo "Serving on http://127.0.0.1:${port} (API docs: /api/docs/, admin: /admin/); django-q2 worker pid ${worker}"
.venv/bin/gunicorn batterypred.wsgi --bind "0.0.0.0:${port}" --workers "${WEB_CONCURRENCY:-3}" \
  --access-logfile - --timeout 30
