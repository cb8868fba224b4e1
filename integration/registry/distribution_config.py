#!/usr/bin/env python3
"""Print a config.yml for the CNCF distribution registry 2.8 (Debian's docker-registry).

Used to run distribution as the baseline that stowage's registry is compared
with, on the same storage: a local directory or an S3 bucket.

What the config sets:
  - log level warn, access log off (no per-request line on stdout);
  - http.addr from --listen, plain HTTP, no auth unless --htpasswd FILE;
  - storage.delete enabled, blob descriptor cache in memory (as in the
    config distribution ships);
  - storage.redirect disabled unless --redirect: blob bytes then flow through
    the registry rather than being fetched from S3 by the client, so both
    registries do the same work;
  - filesystem: rootdirectory;
  - s3: regionendpoint, region, bucket, keys, secure (from the endpoint's
    scheme), v4auth true, chunksize 16 MiB, rootdirectory. Distribution 2.8
    has no forcepathstyle option: it always uses path-style requests when
    regionendpoint is set.

The S3 keys are read from the environment variables named by
--access-key-env/--secret-key-env and written into the config (fine for test
machines); they are never printed to stderr.

CLI:
  distribution_config.py --storage filesystem --root DIR [--listen HOST:PORT]
      [--redirect]
  distribution_config.py --storage s3 --endpoint URL --bucket B
      --access-key-env VAR --secret-key-env VAR [--region R] [--root /prefix]
      [--listen HOST:PORT] [--redirect]
  --listen defaults to 127.0.0.1:5000.

Example:
  distribution_config.py --storage filesystem --root /tmp/reg \\
      --listen 127.0.0.1:5001 > /tmp/reg.yml
  env -u AWS_CA_BUNDLE docker-registry serve /tmp/reg.yml
(distribution 2.8's S3 driver panics at start when AWS_CA_BUNDLE is set.)
"""

import argparse
import json
import os
import sys
from urllib.parse import urlparse

CHUNK_SIZE = 16 * 1024 * 1024


def storage_section(args):
    if args.storage == "filesystem":
        driver = {"filesystem": {"rootdirectory": os.path.abspath(args.root)}}
    else:
        driver = {"s3": s3_parameters(args)}
    driver["delete"] = {"enabled": True}
    driver["redirect"] = {"disable": not args.redirect}
    driver["cache"] = {"blobdescriptor": "inmemory"}
    return driver


def s3_parameters(args):
    endpoint = urlparse(args.endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
        raise ValueError(f"--endpoint must be an http:// or https:// URL, got {args.endpoint!r}")
    params = {
        "regionendpoint": args.endpoint,
        "region": args.region,
        "bucket": args.bucket,
        "accesskey": env_secret(args.access_key_env),
        "secretkey": env_secret(args.secret_key_env),
        "secure": endpoint.scheme == "https",
        "v4auth": True,
        "chunksize": CHUNK_SIZE,
    }
    if args.root:
        params["rootdirectory"] = args.root
    return params


def env_secret(name):
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"environment variable {name} is not set or empty")
    return value


def build_config(args):
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "http": {"addr": args.listen},
        "storage": storage_section(args),
    }
    if args.htpasswd:
        config["auth"] = {"htpasswd": {"realm": "stowage-bench",
                                       "path": os.path.abspath(args.htpasswd)}}
    return config


def to_yaml(value, indent=0):
    """Render nested dicts of scalars as block YAML.

    Scalars are written as JSON, which YAML reads back unchanged (strings
    double-quoted), so no value can be misread whatever characters it holds.
    """
    lines = []
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(item, indent + 1))
        else:
            lines.append(f"{pad}{key}: {json.dumps(item)}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Print a distribution 2.8 registry config (filesystem or S3 storage).")
    parser.add_argument("--storage", choices=["filesystem", "s3"], required=True)
    parser.add_argument("--root",
                        help="filesystem: data directory (required); "
                             "s3: key prefix (rootdirectory, optional)")
    parser.add_argument("--listen", default="127.0.0.1:5000", metavar="HOST:PORT")
    parser.add_argument("--htpasswd", metavar="FILE",
                        help="basic auth with this htpasswd file (bcrypt entries)")
    parser.add_argument("--redirect", action="store_true",
                        help="let clients fetch blobs from storage by redirect (default: off)")
    s3 = parser.add_argument_group("s3 storage")
    s3.add_argument("--endpoint", help="S3 endpoint URL, e.g. http://127.0.0.1:7480")
    s3.add_argument("--bucket")
    s3.add_argument("--access-key-env", metavar="VAR")
    s3.add_argument("--secret-key-env", metavar="VAR")
    s3.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    if args.storage == "filesystem" and not args.root:
        parser.error("--storage filesystem needs --root")
    if args.storage == "s3":
        missing = [flag for flag, value in [
            ("--endpoint", args.endpoint), ("--bucket", args.bucket),
            ("--access-key-env", args.access_key_env),
            ("--secret-key-env", args.secret_key_env)] if not value]
        if missing:
            parser.error(f"--storage s3 needs {', '.join(missing)}")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        config = build_config(args)
    except ValueError as error:
        print(f"distribution_config.py: {error}", file=sys.stderr)
        return 2
    print(to_yaml(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
