#!/usr/bin/env bash
# Creates the Secret that k8s/reportflow.yaml reads (reportflow-secrets): a fresh Ed25519 signing key, random
# passwords for the in-chart PostgreSQL, Redis and S3 server, and the URLs the services reach them by.
# Keeps an existing Secret (a new key would log everyone out; new passwords would not match the data).
# `--print` writes the manifest to stdout instead (no cluster needed).
set -euo pipefail
namespace="${NAMESPACE:-reportflow}"
name=reportflow-secrets
kubectl="${KUBECTL:-kubectl}"
if [[ "${1:-}" != "--print" ]] && "$kubectl" -n "$namespace" get secret "$name" >/dev/null 2>&1; then
  echo "secret $namespace/$name exists: kept" >&2
  exit 0
fi
pg="$(openssl rand -hex 16)"
redis="$(openssl rand -hex 16)"
s3="$(openssl rand -hex 20)"
args=(-n "$namespace" create secret generic "$name"
  --from-literal=JWT_PRIVATE_KEY="$(openssl genpkey -algorithm ed25519)"
  --from-literal=POSTGRES_PASSWORD="$pg"
  --from-literal=DATABASE_URL="postgresql+psycopg2://reportflow:$pg@reportflow-postgresql:5432/reportflow"
  --from-literal=REDIS_PASSWORD="$redis"
  --from-literal=REDIS_URL="redis://:$redis@reportflow-redis:6379/0"
  --from-literal=S3_ACCESS_KEY_ID=reportflow-dev
  --from-literal=S3_SECRET_ACCESS_KEY="$s3")
if [[ "${1:-}" == "--print" ]]; then
  "$kubectl" "${args[@]}" --dry-run=client -o yaml
else
  "$kubectl" "${args[@]}"
fi
