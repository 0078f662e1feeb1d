#!/usr/bin/env bash
# `make run`: starts build/dcmsd with development defaults (SQLite in ./data,
# 127.0.0.1:8080) unless the environment already sets them. Ctrl-C stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export DCMS_LISTEN=${DCMS_LISTEN:-127.0.0.1:8080}
export DCMS_DATA_DIR=${DCMS_DATA_DIR:-./data}
# Development only: a known admin (created on the first start with an empty
# store) and e-mail verification tokens in the log.
export DCMS_ADMIN_EMAIL=${DCMS_ADMIN_EMAIL:-admin@dcms.local}
export DCMS_ADMIN_PASSWORD=${DCMS_ADMIN_PASSWORD:-dev-admin-passphrase}
export DCMS_DEV_MODE=${DCMS_DEV_MODE:-true}
echo "dcms development server"
echo "  listening on   http://$DCMS_LISTEN  (try: curl -s http://$DCMS_LISTEN/healthz)"
echo "  data directory $DCMS_DATA_DIR"
echo "  database       ${DCMS_DATABASE_URL:-sqlite:$DCMS_DATA_DIR/dcms.db}"
echo "  admin          $DCMS_ADMIN_EMAIL / $DCMS_ADMIN_PASSWORD  (development only; see docs/iam.md)"
echo "  configuration  docs/configuration.md; stop with Ctrl-C"
exec build/dcmsd "$@"
