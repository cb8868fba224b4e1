#!/usr/bin/env python3
"""boto3 contenders for the S3 benchmark (integration/src/bin/s3_bench.rs).

upload|download KEY SIZE_BYTES: the way Quay talks to S3, sequential 5 MiB
multipart parts on upload, a plain streaming GET on download.
upload_file|download_file KEY FILE: what a Python user reaches for,
boto3's managed transfers with s3transfer's defaults (8 MiB parts, 10
threads) and the client's default integrity checksums.

Prints the seconds taken and the CPU seconds used meanwhile. Endpoint and keys from STOWAGE_S3_TEST_* like the
Rust tests."""
import os
import sys
import time

import boto3
from botocore.config import Config

PART = 5 * 1024 * 1024
BLOCK = 1024 * 1024


def client(defaults=False):
    if defaults:
        # Only what this endpoint needs; checksums and transfer settings
        # stay as boto3 ships them.
        config = Config(s3={"addressing_style": "path"})
    else:
        config = Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("STOWAGE_S3_TEST_ENDPOINT") or None,
        aws_access_key_id=os.environ["STOWAGE_S3_TEST_ACCESS_KEY"],
        aws_secret_access_key=os.environ["STOWAGE_S3_TEST_SECRET_KEY"],
        region_name=os.environ.get("STOWAGE_S3_TEST_REGION", "us-east-1"),
        config=config,
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


def upload_file(s3, bucket, key, path):
    s3.upload_file(path, bucket, key)


def download_file(s3, bucket, key, path):
    s3.download_file(bucket, key, path)


def main():
    op, key, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    bucket = os.environ["STOWAGE_S3_TEST_BUCKET"]
    if op in ("upload_file", "download_file"):
        s3, run, arg = client(defaults=True), globals()[op], arg
    else:
        s3, run, arg = client(), {"upload": upload, "download": download}[op], int(arg)
    t, cpu = time.perf_counter(), time.process_time()
    run(s3, bucket, key, arg)
    # Seconds, then the CPU seconds of this process's threads meanwhile.
    print(f"{time.perf_counter() - t:.3f} {time.process_time() - cpu:.3f}")


if __name__ == "__main__":
    main()
