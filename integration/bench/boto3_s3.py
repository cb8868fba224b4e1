#!/usr/bin/env python3
"""The way Quay talks to S3, for the benchmark: boto3, sequential 5 MiB
multipart parts on upload, a plain streaming GET on download.

usage: boto3_s3.py upload|download KEY SIZE_BYTES   (prints seconds)
Endpoint and keys from STOWAGE_S3_TEST_* like the Rust tests."""
import os
import sys
import time

import boto3
from botocore.config import Config

PART = 5 * 1024 * 1024
BLOCK = 1024 * 1024


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("STOWAGE_S3_TEST_ENDPOINT") or None,
        aws_access_key_id=os.environ["STOWAGE_S3_TEST_ACCESS_KEY"],
        aws_secret_access_key=os.environ["STOWAGE_S3_TEST_SECRET_KEY"],
        region_name=os.environ.get("STOWAGE_S3_TEST_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def upload(s3, bucket, key, size):
    block = os.urandom(BLOCK)
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts, sent, n = [], 0, 0
    while sent < size:
        length = min(PART, size - sent)
        body = (block * (PART // BLOCK + 1))[:length]
        n += 1
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=body)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
        sent += length
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )


def download(s3, bucket, key, size):
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    got = 0
    for chunk in body.iter_chunks(BLOCK):
        got += len(chunk)
    if got != size:
        raise SystemExit(f"read {got} bytes, expected {size}")


def main():
    op, key, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s3 = client()
    bucket = os.environ["STOWAGE_S3_TEST_BUCKET"]
    t = time.perf_counter()
    {"upload": upload, "download": download}[op](s3, bucket, key, size)
    print(f"{time.perf_counter() - t:.3f}")


if __name__ == "__main__":
    main()
