#!/usr/bin/env python3
"""Python contenders of the Azure benchmark (integration/bench-azure.sh):
Azure's Python SDK, azure-storage-blob, used the way its documentation
shows, one transfer per process.

upload FILE BLOB CONCURRENCY: BlobClient.upload_blob(open(FILE), overwrite=True)
read BLOB CONCURRENCY:        BlobClient.download_blob().readinto(/dev/null)
get BLOB FILE CONCURRENCY:    BlobClient.download_blob().readinto(open(FILE, "wb"))
describe:                     the SDK's version and transfer settings

CONCURRENCY is `default` (max_concurrency not passed: the SDK's default,
1) or a number given as max_concurrency. Every other transfer setting
stays as the SDK ships it (64 MiB single-put limit, 4 MiB blocks, a
32 MiB first GET then 4 MiB ranges, no content validation).

upload, read and get print one line, `BYTES SECONDS`, the same line as
integration/src/bin/azure_bench.rs: the bytes moved and the seconds the
transfer took (interpreter start-up and imports excluded). The account
comes from STOWAGE_AZURE_TEST_* (integration/servers/azurite-up.sh writes
them)."""
import os
import sys
import time

from azure.storage.blob import BlobClient, __version__ as SDK_VERSION

MIB = 1024 * 1024


def client(blob):
    url = os.environ["STOWAGE_AZURE_TEST_ACCOUNT_URL"].rstrip("/")
    scheme = url.split(":", 1)[0]
    connection = (
        f"DefaultEndpointsProtocol={scheme};"
        f"AccountName={os.environ['STOWAGE_AZURE_TEST_ACCOUNT']};"
        f"AccountKey={os.environ['STOWAGE_AZURE_TEST_KEY']};"
        f"BlobEndpoint={url};"
    )
    return BlobClient.from_connection_string(
        connection,
        container_name=os.environ["STOWAGE_AZURE_TEST_CONTAINER"],
        blob_name=blob,
    )


def concurrency(word):
    """The keyword arguments for CONCURRENCY: none for `default`."""
    return {} if word == "default" else {"max_concurrency": int(word)}


def upload(path, blob, word):
    c = client(blob)
    t = time.perf_counter()
    with open(path, "rb") as f:
        c.upload_blob(f, overwrite=True, **concurrency(word))
    secs = time.perf_counter() - t
    size = os.path.getsize(path)
    stored = c.get_blob_properties().size
    if stored != size:
        raise SystemExit(f"{blob} has {stored} bytes, {path} has {size}")
    return size, secs


def read(blob, word):
    c = client(blob)
    t = time.perf_counter()
    # /dev/null is seekable, as readinto needs with max_concurrency > 1.
    with open(os.devnull, "wb") as sink:
        downloader = c.download_blob(**concurrency(word))
        n = downloader.readinto(sink)
    secs = time.perf_counter() - t
    if n != downloader.size:
        raise SystemExit(f"read {n} bytes of {blob}, its size is {downloader.size}")
    return n, secs


def get(blob, path, word):
    c = client(blob)
    t = time.perf_counter()
    with open(path, "wb") as f:
        downloader = c.download_blob(**concurrency(word))
        n = downloader.readinto(f)
    secs = time.perf_counter() - t
    on_disk = os.path.getsize(path)
    if n != downloader.size or on_disk != n:
        raise SystemExit(f"{path} has {on_disk} bytes, {blob} has {downloader.size}")
    return n, secs


def describe():
    # The transfer settings live on the client's configuration object,
    # which the SDK does not document: shown when it is there.
    config = getattr(client("x"), "_config", None)
    sizes = [getattr(config, name, None) for name in (
        "max_single_put_size", "max_block_size", "max_single_get_size", "max_chunk_get_size")]
    if all(isinstance(s, int) for s in sizes):
        put, block, first, chunk = (s // MIB for s in sizes)
        settings = (f"single put up to {put} MiB, blocks of {block} MiB; first GET {first} MiB, "
                    f"then ranges of {chunk} MiB")
    else:
        settings = "transfer sizes not shown by this version"
    print(f"azure-storage-blob {SDK_VERSION}: {settings}; max_concurrency 1 unless given")


def main():
    op, args = sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]
    runs = {"upload": (upload, 3), "read": (read, 2), "get": (get, 3)}
    if op == "describe" and not args:
        describe()
        return
    if op not in runs or len(args) != runs[op][1]:
        raise SystemExit(__doc__)
    size, secs = runs[op][0](*args)
    print(f"{size} {secs:.6f}")


if __name__ == "__main__":
    main()
