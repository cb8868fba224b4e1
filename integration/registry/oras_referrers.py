#!/usr/bin/env python3
"""Attach artifacts to an image (or an artifact) with the `oras` Python SDK
and list them through the OCI 1.1 referrers API.

Takes the image at --subject-tag as the subject (pushed beforehand, by
skopeo say), or pushes a subject artifact; then pushes two artifacts that name it as `subject`
(an SBOM-like and a signature-like one, told apart by their config media
type, which is their artifactType), and checks, through the SDK's own HTTP
session:
  - each attaching push was answered with `OCI-Subject: <subject digest>`;
  - GET /v2/<repo>/referrers/<digest> is an image index listing both, with
    their artifactType, size and digest;
  - ?artifactType= filters to one and says so in `OCI-Filters-Applied`;
  - a digest nobody refers to gives an empty index (200, not 404).

CLI: oras_referrers.py --registry HOST:PORT --repo NAME [--subject-tag TAG]
Exit 0 and "oras referrers ok" on success, 1 naming what differed.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

try:
    import oras.client
    import oras.oci
except ImportError:
    sys.exit("oras_referrers.py: the oras SDK is missing: python3 -m pip install oras")

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


class CheckFailed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


def manifest_bytes(client, registry, repo, reference):
    response = client.do_request(
        f"http://{registry}/v2/{repo}/manifests/{reference}", "GET",
        headers={"Accept": MANIFEST})
    expect(response.status_code == 200,
           f"GET manifest {reference}: {response.status_code} {response.text[:200]}")
    return response.content


def push_file(client, target, directory, name, data, config_type=None, subject=None):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    kwargs = {}
    if config_type:
        kwargs["manifest_config"] = f"/dev/null:{config_type}"
    if subject:
        kwargs["subject"] = subject
    return client.push(target=target, files=[path], disable_path_validation=True,
                       quiet=True, **kwargs)


def referrers(client, registry, repo, digest, artifact_type=None):
    url = f"http://{registry}/v2/{repo}/referrers/{digest}"
    if artifact_type:
        url += f"?artifactType={artifact_type}"
    response = client.do_request(url, "GET", headers={"Accept": INDEX})
    expect(response.status_code == 200,
           f"GET {url}: {response.status_code} {response.text[:200]}")
    expect(response.headers.get("Content-Type", "").startswith(INDEX),
           f"GET {url}: Content-Type {response.headers.get('Content-Type')!r}")
    index = response.json()
    expect(index.get("mediaType") == INDEX and index.get("schemaVersion") == 2,
           f"GET {url}: not an image index: {index}")
    return response, index


def run(registry, repo, subject_tag=None):
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    with tempfile.TemporaryDirectory() as d:
        if subject_tag is None:
            subject_tag = "subject"
            push_file(client, f"{registry}/{repo}:{subject_tag}", d, "app.bin",
                      os.urandom(2048))
        raw = manifest_bytes(client, registry, repo, subject_tag)
        subject_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        subject = oras.oci.Subject(mediaType=MANIFEST, digest=subject_digest, size=len(raw))
        attached = {}
        for tag, kind, body in [("sbom", SBOM, b'{"packages": []}'),
                                ("sig", SIGNATURE, os.urandom(64))]:
            response = push_file(client, f"{registry}/{repo}:{tag}", d, f"{tag}.dat", body,
                                 config_type=kind, subject=subject)
            expect(response.headers.get("OCI-Subject") == subject_digest,
                   f"push of {tag}: OCI-Subject {response.headers.get('OCI-Subject')!r}, "
                   f"expected {subject_digest}")
            raw = manifest_bytes(client, registry, repo, tag)
            attached[kind] = ("sha256:" + hashlib.sha256(raw).hexdigest(), len(raw))

    _, index = referrers(client, registry, repo, subject_digest)
    listed = {m.get("artifactType"): (m.get("digest"), m.get("size"), m.get("mediaType"))
              for m in index.get("manifests", [])}
    for kind, (digest, size) in attached.items():
        expect(listed.get(kind) == (digest, size, MANIFEST),
               f"referrers: {kind} listed as {listed.get(kind)}, expected {(digest, size)}")
    expect(len(listed) == 2, f"referrers: expected 2 entries, got {index}")

    response, index = referrers(client, registry, repo, subject_digest, SBOM)
    kinds = [m.get("artifactType") for m in index.get("manifests", [])]
    expect(kinds == [SBOM], f"filtered referrers: {kinds}")
    expect("artifactType" in response.headers.get("OCI-Filters-Applied", ""),
           f"OCI-Filters-Applied: {response.headers.get('OCI-Filters-Applied')!r}")

    # The subject itself is untouched by what was attached to it: its tag
    # still names the same manifest.
    raw = manifest_bytes(client, registry, repo, subject_tag)
    expect("sha256:" + hashlib.sha256(raw).hexdigest() == subject_digest,
           f"the subject {subject_tag} changed after the attachments")

    nobody = "sha256:" + hashlib.sha256(b"nobody refers to this").hexdigest()
    _, index = referrers(client, registry, repo, nobody)
    expect(index.get("manifests") == [], f"empty referrers: {index}")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--subject-tag", help="attach to the image at this tag")
    args = parser.parse_args(argv)
    try:
        run(args.registry, args.repo, args.subject_tag)
    except CheckFailed as error:
        print(f"oras referrers FAILED: {error}")
        return 1
    print("oras referrers ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
