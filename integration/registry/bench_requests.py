#!/usr/bin/env python3
"""Requests per second of registry lookups, stowage against distribution,
measured with wrk in interleaved rounds (one run, several rounds, median of
the per-round ratios).

Endpoints (each a small answer the server looks up in storage):
  manifest-tag     GET /v2/<repo>/manifests/<tag>
  manifest-digest  GET /v2/<repo>/manifests/<digest>
  blob-small       GET /v2/<repo>/blobs/<config digest> (wrk's HEAD requests
                   misbehave, so the blob check is a GET of the small config
                   blob: the same lookups plus a few hundred bytes)
  tags-list        GET /v2/<repo>/tags/list

Targets come in pairs NAME=HOST:PORT; the image is pushed to each with
skopeo first. With --creds USER:PASS every request carries basic auth.

CLI:
  bench_requests.py --image OCI_DIR --tag TAG --pair LABEL=STOWAGE_ADDR,DIST_ADDR ...
      [--rounds 5] [--duration 5] [--connections 32] [--creds USER:PASS]
"""

import argparse
import base64
import json
import re
import statistics
import subprocess
import sys
import tempfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def skopeo_push(image, tag, addr, repo, creds):
    args = ["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false"]
    if creds:
        args += ["--dest-creds", creds]
    args += [f"oci:{image}:{tag}", f"docker://{addr}/{repo}:{tag}"]
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run(args, capture_output=True, text=True,
                             env={"XDG_DATA_HOME": cache, "PATH": "/usr/bin:/bin",
                                  "_CONTAINERS_ROOTLESS_UID": "65534"})
    if out.returncode != 0:
        sys.exit(f"skopeo push to {addr} failed:\n{out.stderr}")


def image_digests(image, tag):
    with open(f"{image}/index.json") as f:
        index = json.load(f)
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    algo, hexd = desc["digest"].split(":")
    with open(f"{image}/blobs/{algo}/{hexd}") as f:
        manifest = json.load(f)
    return desc["digest"], manifest["config"]["digest"]


def wrk(url, duration, connections, headers):
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    if not m or errors:
        sys.exit(f"wrk {url} failed:\n{out.stdout}\n{out.stderr}")
    return float(m.group(1))


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--pair", action="append", required=True,
                        help="LABEL=STOWAGE_ADDR,DISTRIBUTION_ADDR")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--creds")
    args = parser.parse_args(argv)
    headers = [f"Accept: {MANIFEST}"]
    if args.creds:
        token = base64.b64encode(args.creds.encode()).decode()
        headers.append(f"Authorization: Basic {token}")
    manifest_digest, config_digest = image_digests(args.image, args.tag)
    repo = "bench/requests"
    pairs = []
    for spec in args.pair:
        label, addrs = spec.split("=", 1)
        stowage, distribution = addrs.split(",")
        for addr in (stowage, distribution):
            skopeo_push(args.image, args.tag, addr, repo, args.creds)
        pairs.append((label, stowage, distribution))
    endpoints = [
        ("manifest-tag", f"/v2/{repo}/manifests/{args.tag}"),
        ("manifest-digest", f"/v2/{repo}/manifests/{manifest_digest}"),
        ("blob-small", f"/v2/{repo}/blobs/{config_digest}"),
        ("tags-list", f"/v2/{repo}/tags/list"),
    ]
    rows = []
    for label, stowage, distribution in pairs:
        for name, path in endpoints:
            ratios, s_rates, d_rates = [], [], []
            for r in range(args.rounds):
                order = [("s", stowage), ("d", distribution)]
                if r % 2:
                    order.reverse()
                rates = {}
                for who, addr in order:
                    rates[who] = wrk(f"http://{addr}{path}", args.duration,
                                     args.connections, headers)
                s_rates.append(rates["s"])
                d_rates.append(rates["d"])
                ratios.append(rates["s"] / rates["d"])
                print(f"{label} {name} round {r + 1}: stowage {rates['s']:.0f}/s, "
                      f"distribution {rates['d']:.0f}/s, ratio {ratios[-1]:.2f}", flush=True)
            rows.append((label, name, statistics.median(s_rates),
                         statistics.median(d_rates), statistics.median(ratios)))
    print()
    print("| storage | endpoint | stowage req/s | distribution req/s | median ratio |")
    print("|---|---|---|---|---|")
    for label, name, s, d, ratio in rows:
        print(f"| {label} | {name} | {s:.0f} | {d:.0f} | **{ratio:.2f}x** |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
