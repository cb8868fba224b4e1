#!/usr/bin/env python3
"""Smoke check of a test S3 server: put, get, list and delete one object.

Reads STOWAGE_S3_TEST_{ENDPOINT,ACCESS_KEY,SECRET_KEY,BUCKET,REGION} (source
BASE_DIR/env first). The up-scripts run it so that a broken server fails at
start with a clear message instead of in the middle of the test suite.
"""
import os
import sys
import uuid

try:
    import boto3
    from botocore.config import Config
except ImportError:
    sys.exit("check-s3: boto3 is missing; run integration/servers/install.sh")


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"check-s3: {name} is not set (source BASE_DIR/env first)")
    return value


def client():
    opts = dict(s3={"addressing_style": "path"}, signature_version="s3v4",
                connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
    try:
        # RGW rejects the trailing checksums newer botocore sends by default.
        cfg = Config(request_checksum_calculation="when_required",
                     response_checksum_validation="when_required", **opts)
    except TypeError:  # botocore older than 1.36 has neither option
        cfg = Config(**opts)
    return boto3.client("s3", endpoint_url=env("STOWAGE_S3_TEST_ENDPOINT"),
                        region_name=env("STOWAGE_S3_TEST_REGION"),
                        aws_access_key_id=env("STOWAGE_S3_TEST_ACCESS_KEY"),
                        aws_secret_access_key=env("STOWAGE_S3_TEST_SECRET_KEY"),
                        config=cfg)


def main():
    endpoint, bucket = env("STOWAGE_S3_TEST_ENDPOINT"), env("STOWAGE_S3_TEST_BUCKET")
    where = f"{os.environ.get('STOWAGE_S3_TEST_SERVER', 'S3')} at {endpoint}, bucket {bucket}"
    s3 = client()
    key = f"check-s3/{uuid.uuid4().hex}"
    body = os.urandom(1000)

    def get():
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == body, f"read back {len(got)} bytes that differ from the {len(body)} written"

    def listed():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="check-s3/").get("Contents", [])]
        assert key in keys, f"{key} missing from the listing {keys}"

    def gone():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])]
        assert not keys, f"{key} still listed after delete"

    steps = [
        ("put", lambda: s3.put_object(Bucket=bucket, Key=key, Body=body)),
        ("get", get),
        ("list", listed),
        ("delete", lambda: s3.delete_object(Bucket=bucket, Key=key)),
        ("list after delete", gone),
    ]
    for name, run in steps:
        try:
            run()
        except Exception as e:  # report any failure the same way
            sys.exit(f"check-s3: FAILED at {name} ({where}): {type(e).__name__}: {e}")
    print(f"check-s3: OK ({where}): put/get/list/delete")


if __name__ == "__main__":
    main()
