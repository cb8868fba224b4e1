#!/usr/bin/env python3
"""Round-trip an ORAS artifact through a registry with the `oras` Python SDK.

Checks that a registry serves non-image OCI artifacts the way ORAS clients
use them: it pushes two small files (one with a space in its name, one of
binary bytes) as an artifact, fetches the manifest through the SDK and checks
every layer's digest, size and title against the local files, then pulls the
artifact into another directory and compares each file byte for byte.

Plain HTTP without credentials by default; with --ca-file, HTTPS trusting
that CA; with ORAS_USER and ORAS_PASS in the environment (the SDK's basic
auth backend reads them there, so the password is never an argument),
basic authentication, after checking that /v2/ answers 401 without the
credentials and 200 with them. The SDK uploads each blob with POST + PUT,
or with POST + PATCH... + PUT with --chunked.

CLI:
  [ORAS_USER=U ORAS_PASS=P] oras_check.py --registry HOST:PORT --repo NAME
      [--tag TAG] [--chunked] [--ca-file CA.pem]

Exit status 0 and "oras round trip ok" on success; 1 and a message naming
what differed (or what failed) otherwise.

Example:
  python3 -m pip install oras
  oras_check.py --registry 127.0.0.1:5000 --repo test/oras --tag v1
"""

import argparse
import hashlib
import os
import random
import sys
import tempfile

import requests

try:
    import oras.client
except ImportError:
    sys.exit("oras_check.py: the oras SDK is missing: python3 -m pip install oras")

TITLE_ANNOTATION = "org.opencontainers.image.title"
CHUNK_SIZE = 1024  # small, so that --chunked sends several PATCH requests


class CheckFailed(Exception):
    pass


def make_files(directory):
    """Write the two artifact files; returns {file name: content}."""
    # New bytes every run: a blob the repository already has would be
    # skipped by the SDK (it asks with a HEAD first), and a --chunked run
    # would then send no PATCH at all.
    token = os.urandom(8).hex().encode()
    files = {
        "hello.txt": b"hello from stowage's oras check " + token + b"\n" * 20,
        "file with space.bin": random.Random(token).randbytes(5000),
    }
    for name, content in files.items():
        with open(os.path.join(directory, name), "wb") as file:
            file.write(content)
    return files


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def credentials():
    """(user, password) from ORAS_USER and ORAS_PASS, or None."""
    user, password = os.environ.get("ORAS_USER"), os.environ.get("ORAS_PASS")
    return (user, password) if user and password else None


def check_registry_reachable(registry, ca_file):
    """Fail fast with a clear message (the SDK retries for minutes otherwise);
    with credentials, /v2/ must refuse a request without them."""
    scheme = "https" if ca_file else "http"
    url = f"{scheme}://{registry}/v2/"
    verify = ca_file or True
    auth = credentials()
    try:
        response = requests.get(url, timeout=10, verify=verify, auth=auth)
        anonymous = requests.get(url, timeout=10, verify=verify) if auth else None
    except requests.RequestException as error:
        raise CheckFailed(f"registry not reachable at {url}: {error}") from error
    if response.status_code != 200:
        raise CheckFailed(f"GET {url} answered {response.status_code}, expected 200")
    if anonymous is not None and anonymous.status_code != 401:
        raise CheckFailed(f"GET {url} without credentials answered "
                          f"{anonymous.status_code}, expected 401")


def push(client, target, directory, names, chunked):
    paths = [os.path.join(directory, name) for name in names]
    client.push(target=target, files=paths, disable_path_validation=True,
                do_chunked=chunked, chunk_size=CHUNK_SIZE, quiet=True)


def check_manifest(manifest, files):
    """Each local file must appear once as a layer with its digest, size and title."""
    layers = manifest.get("layers", [])
    if len(layers) != len(files):
        raise CheckFailed(f"manifest has {len(layers)} layers, expected {len(files)}")
    by_title = {(layer.get("annotations") or {}).get(TITLE_ANNOTATION): layer
                for layer in layers}
    for name, content in files.items():
        layer = by_title.get(name)
        if layer is None:
            raise CheckFailed(f"no layer titled {name!r} in the manifest: {sorted(by_title)}")
        if layer["digest"] != sha256_digest(content):
            raise CheckFailed(f"{name!r}: manifest digest {layer['digest']}, "
                              f"expected {sha256_digest(content)}")
        if layer["size"] != len(content):
            raise CheckFailed(f"{name!r}: manifest size {layer['size']}, expected {len(content)}")


def check_pulled(directory, files):
    """Every pulled file must equal the pushed one, and nothing else may be there."""
    pulled = sorted(os.listdir(directory))
    if pulled != sorted(files):
        raise CheckFailed(f"pulled files {pulled}, expected {sorted(files)}")
    for name, content in files.items():
        with open(os.path.join(directory, name), "rb") as file:
            got = file.read()
        if got != content:
            raise CheckFailed(f"{name!r}: pulled {len(got)} bytes (digest {sha256_digest(got)}) "
                              f"differ from the {len(content)} pushed")


def round_trip(registry, repo, tag, chunked, ca_file=None):
    check_registry_reachable(registry, ca_file)
    client = oras.client.OrasClient(
        hostname=registry, insecure=not ca_file, tls_verify=ca_file or True,
        auth_backend="basic" if credentials() else "token")
    target = f"{registry}/{repo}:{tag}"
    with tempfile.TemporaryDirectory() as source, tempfile.TemporaryDirectory() as dest:
        files = make_files(source)
        push(client, target, source, list(files), chunked)
        check_manifest(client.get_manifest(target), files)
        client.pull(target=target, outdir=dest)
        check_pulled(dest, files)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Push and pull a two-file ORAS artifact and compare it byte for byte.")
    parser.add_argument("--registry", required=True, metavar="HOST:PORT")
    parser.add_argument("--repo", required=True, metavar="NAME")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--chunked", action="store_true",
                        help="upload blobs in chunks (POST, PATCH..., PUT)")
    parser.add_argument("--ca-file", metavar="CA.pem",
                        help="HTTPS, trusting this CA certificate")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    try:
        round_trip(args.registry, args.repo, args.tag, args.chunked, args.ca_file)
    except CheckFailed as error:
        print(f"oras check FAILED: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # the SDK raises assorted exception types
        print(f"oras check FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("oras round trip ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
