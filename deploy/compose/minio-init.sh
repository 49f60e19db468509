#!/bin/sh
# One-shot job of the compose stack (image minio/mc): creates the reports bucket and the services' own
# access key, allowed on that bucket only. Safe to run again: every step tolerates what already exists.
set -eu

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$S3_BUCKET"

cat > /tmp/reportflow-policy.json <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$S3_BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$S3_BUCKET/*"]}
  ]
}
JSON
mc admin policy create local reportflow-services /tmp/reportflow-policy.json
mc admin user add local "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY"
if ! out=$(mc admin policy attach local reportflow-services --user "$S3_ACCESS_KEY_ID" 2>&1); then
  case "$out" in
    *already*) ;;  # attached by an earlier run
    *) echo "$out" >&2; exit 1 ;;
  esac
fi
echo "bucket $S3_BUCKET and its access key are ready"
