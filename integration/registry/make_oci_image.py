#!/usr/bin/env python3
"""Build a synthetic OCI image layout on disk, without any network.

The image is meant for registry tests and benchmarks: its layers are
uncompressed tar archives (media type application/vnd.oci.image.layer.v1.tar),
each holding one file of deterministic pseudo-random bytes, so the same
arguments always give the same digests and nothing compresses them away.

Layout written to OUT_DIR (which must not exist or be empty):
  oci-layout, index.json (one manifest, annotated
  org.opencontainers.image.ref.name=TAG), blobs/sha256/<hex> for every layer,
  the config (with rootfs.diff_ids) and the image manifest.

Layers are streamed to disk in 1 MiB blocks while being hashed, so memory use
does not grow with the layer size.

CLI:
  make_oci_image.py OUT_DIR [--layers N] [--layer-mib M] [--seed S]
                    [--tag TAG] [--small]

  --layers N     number of layers (default 4)
  --layer-mib M  size of the file in each layer, in MiB (default 64)
  --seed S       seed of the pseudo-random content (default 1)
  --tag TAG      reference name written to index.json (default latest)
  --small        2 layers, each a small text file of a few KiB (for
                 functional tests); ignores --layers and --layer-mib

Prints one JSON line:
  {"manifest_digest": ..., "config_digest": ..., "layers": [...],
   "total_bytes": ..., "tag": ...}
where total_bytes is the size of every blob a push transfers (layers, config
and manifest).

Example:
  make_oci_image.py /tmp/img --layers 8 --layer-mib 128 --tag big
  skopeo inspect --raw oci:/tmp/img:big
"""

import argparse
import hashlib
import json
import os
import random
import sys
import tarfile
import tempfile

MIB = 1 << 20
TAR_BLOCK = 512
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


class HashingWriter:
    """Writes to a file while computing its sha256 and size."""

    def __init__(self, file):
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.file.write(data)
        self.sha256.update(data)
        self.size += len(data)


def random_blocks(seed, layer_index, mib):
    """Yield `mib` blocks of 1 MiB of pseudo-random bytes, fixed by seed and layer."""
    rng = random.Random(f"stowage-oci-image:{seed}:{layer_index}")
    for _ in range(mib):
        yield rng.randbytes(MIB)


def small_text(seed, layer_index):
    """A few KiB of readable text, fixed by seed and layer."""
    rng = random.Random(f"stowage-oci-text:{seed}:{layer_index}")
    words = ["registry", "layer", "blob", "manifest", "digest", "storage",
             "stowage", "content", "tag", "index", "push", "pull"]
    lines = [f"small test layer {layer_index}, seed {seed}"]
    for number in range(1, 120):
        lines.append(f"{number:04d} " + " ".join(rng.choice(words) for _ in range(6)))
    return ("\n".join(lines) + "\n").encode()


def tar_member_header(name, size):
    """The ustar header of a regular file with fixed owner, mode and mtime."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def write_tar_layer(path, member_name, blocks, size):
    """Write a one-file tar archive from `blocks` (totalling `size` bytes).

    Returns (sha256 hex, archive size).
    """
    with open(path, "wb") as file:
        out = HashingWriter(file)
        out.write(tar_member_header(member_name, size))
        written = 0
        for block in blocks:
            out.write(block)
            written += len(block)
        if written != size:
            raise RuntimeError(f"layer content is {written} bytes, expected {size}")
        out.write(b"\0" * (-size % TAR_BLOCK))
        out.write(b"\0" * (2 * TAR_BLOCK))  # end-of-archive marker
    return out.sha256.hexdigest(), out.size


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, root):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blob_dir, exist_ok=True)

    def add_streamed_blob(self, write, *write_args):
        """Store the blob that write(path, *write_args) -> (hex, size) produces.

        Returns (digest, size).
        """
        fd, tmp = tempfile.mkstemp(dir=self.blob_dir, prefix=".partial-")
        os.close(fd)
        try:
            hex_digest, size = write(tmp, *write_args)
            os.chmod(tmp, 0o644)
            os.replace(tmp, os.path.join(self.blob_dir, hex_digest))
        except BaseException:
            os.unlink(tmp)
            raise
        return f"sha256:{hex_digest}", size

    def add_json_blob(self, document):
        """Store a JSON document as a blob; returns (digest, size)."""
        data = canonical_json(document)
        hex_digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blob_dir, hex_digest), "wb") as file:
            file.write(data)
        return f"sha256:{hex_digest}", len(data)

    def write_file(self, name, data):
        with open(os.path.join(self.root, name), "wb") as file:
            file.write(data)


def canonical_json(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def layer_plans(args):
    """(member name, content blocks, content size) for each layer to build."""
    if args.small:
        plans = []
        for index in range(2):
            text = small_text(args.seed, index)
            plans.append((f"small/layer-{index}.txt", [text], len(text)))
        return plans
    return [
        (f"data/layer-{index}.bin", random_blocks(args.seed, index, args.layer_mib),
         args.layer_mib * MIB)
        for index in range(args.layers)
    ]


def build_image(args):
    layout = Layout(args.out_dir)
    layer_descriptors = []
    for name, blocks, size in layer_plans(args):
        digest, blob_size = layout.add_streamed_blob(write_tar_layer, name, blocks, size)
        layer_descriptors.append(
            {"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": blob_size})

    # Uncompressed layers: each diff_id is the layer digest itself.
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers",
                   "diff_ids": [layer["digest"] for layer in layer_descriptors]},
        "history": [{"created_by": f"make_oci_image.py layer {index}"}
                    for index in range(len(layer_descriptors))],
    }
    config_digest, config_size = layout.add_json_blob(config)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest,
                   "size": config_size},
        "layers": layer_descriptors,
    }
    manifest_digest, manifest_size = layout.add_json_blob(manifest)

    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {REF_NAME_ANNOTATION: args.tag},
        }],
    }
    layout.write_file("index.json", canonical_json(index))
    layout.write_file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))

    total = sum(layer["size"] for layer in layer_descriptors) + config_size + manifest_size
    return {
        "manifest_digest": manifest_digest,
        "config_digest": config_digest,
        "layers": [layer["digest"] for layer in layer_descriptors],
        "total_bytes": total,
        "tag": args.tag,
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Build a synthetic OCI image layout (uncompressed tar layers).")
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("--layers", type=int, default=4, metavar="N")
    parser.add_argument("--layer-mib", type=int, default=64, metavar="M")
    parser.add_argument("--seed", default="1", metavar="S")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--small", action="store_true",
                        help="2 layers of a few KiB of text (functional tests)")
    args = parser.parse_args(argv)
    if not args.small and (args.layers < 1 or args.layer_mib < 1):
        parser.error("--layers and --layer-mib must be at least 1")
    if os.path.exists(args.out_dir) and (
            not os.path.isdir(args.out_dir) or os.listdir(args.out_dir)):
        parser.error(f"{args.out_dir} exists and is not an empty directory")
    return args


def main(argv):
    args = parse_args(argv)
    print(json.dumps(build_image(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
