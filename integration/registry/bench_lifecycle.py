#!/usr/bin/env python3
"""A registry's life at scale, stowage against distribution: garbage
collection after deletes, and tag and catalog pages at 100,000 tags.

Driven by integration/bench-lifecycle.sh, which starts the servers and runs
the phases below in order; each phase adds its figures to a JSON state file
and `report` prints them as markdown tables.

The data set (`push`, `delete`), the same bytes on every registry:
  --repos R repositories (default 50) named lifecycle/r00 ...; each holds
  20 image manifests tagged m00 ... m19. Manifest i of a repository has
    - its own config (JSON, a few hundred bytes),
    - 3 layers of its own,
    - 3 layers from the repository's pool of 20 shared layers: pool
      entries i, i+1 and i+2 (mod 20), so each shared layer is in exactly
      3 manifests;
  every layer is about 1.1 KiB of bytes derived from its name (registries
  do not look inside layers). With 50 repositories: 1,000 manifests and
  5,000 distinct config and layer blobs (1,000 configs, 3,000 own layers,
  1,000 shared layers), each uploaded once, to its repository; with the
  manifests' own bytes (which both registries keep as blobs) 6,000 objects
  under blobs/.
  Blobs go up 16 at a time as one monolithic POST ?digest= each (stowage
  answers 201); a registry that answers 202 instead (distribution 2.8
  ignores the digest of a POST) gets the bytes in a PUT to the upload's
  Location. Then the manifests, PUT by tag, 16 at a time.
  `delete` then deletes manifests 0 and 10 of every repository by digest
  (DELETE /v2/<repo>/manifests/<digest>, which deletes their tags too):
  10% of the manifests. Nothing else refers to their config and own
  layers, while every shared layer keeps at least one manifest, so a
  collection must remove exactly 5 blobs per deleted manifest (manifest,
  config, 3 layers): 500 of the 6,000 with 50 repositories.

Phases:
  push --target NAME=HOST:PORT ... [--repos 50] [--only-repos K]
      push the data set (with --only-repos, its first K repositories) to
      each target in turn, timed.
  copy-tree --name NAME --source-name NAME --from DIR --to-s3 PREFIX
      upload every file below DIR to the same relative key below PREFIX
      in $STOWAGE_S3_TEST_BUCKET, 48 at a time, timed: one registry's
      local storage copied into another's S3 root.
  delete --target NAME=HOST:PORT ... [--repos 50]
      delete 10% of the manifests (above) through each target's API; the
      tag of a deleted manifest must then be 404 and a kept one 200.
  gc --name NAME --storage LABEL [--rgw-asok PATH | --stats URL]
      [--blobs SPEC] [--stopped] -- COMMAND...
      run a garbage collection COMMAND, timed; with --rgw-asok, the S3
      requests RGW served meanwhile (its `rgw.req` perf counter, read
      with `ceph --admin-daemon PATH perf dump rgw` before and after);
      with --stats, those a fault proxy counted (GET URL before and
      after); with --blobs, the blob objects in storage counted before
      and after (SPEC: fs:DIR, or s3:PREFIX in $STOWAGE_S3_TEST_BUCKET),
      which must drop by the 5 per deleted manifest; --stopped notes that
      the registry was stopped for it. The removals the collector reports
      are read from its output (stowage gc's summary line; distribution's
      "N blobs marked, M blobs and K manifests eligible for deletion").
  check --target NAME=HOST:PORT ... [--repos 50]
      after the collections: manifest 19 of every repository (its shared
      layers were also in the deleted manifest 0) and every blob it names
      come back with the right digest; the deleted tag m00 is 404.
  seed-tags --target NAME=HOST:PORT --store NAME=LAYOUT:KIND:ROOT ...
      [--repo lifecycle/tags] [--tags 100000] [--api-tags 200]
      push one small image to each target, tagged `base`; then tags
      t000000 ... through the API (PUT manifest by tag, 16 at a time;
      the first --api-tags, timed, which gives the API's rate) and the
      rest written straight into the registry's storage: LAYOUT stowage
      (repositories/<repo>/_manifests/tags/<tag>, holding the digest) or
      distribution (.../_manifests/tags/<tag>/current/link and
      .../index/sha256/<hex>/link, both holding the digest, as
      distribution writes a tag); KIND fs (ROOT a directory, the files
      written by this process) or s3 (ROOT a key prefix in
      $STOWAGE_S3_TEST_BUCKET, PUTs signed here, 48 at a time). Then the
      last tag must resolve through the API.
  paging --pair LABEL=STOWAGE_ADDR,DISTRIBUTION_ADDR ... [--repo R]
      [--middle TAG] [--rounds 4] [--requests 5] [--budget 60]
      latency of GET /v2/<repo>/tags/list?n=100, ?n=100&last=<middle tag>
      and /v2/_catalog?n=100, one request after the other on a kept-alive
      connection, --requests per registry and round, the two registries
      of a pair alternating which goes first; a registry whose requests
      have taken --budget/--rounds seconds in a round stops that round
      early (each round makes at least one request), so a slow answer
      costs a bounded time.
  report [--started EPOCH]
      print the tables (and the time since EPOCH).

Every phase takes --state FILE (created by the first). S3 access for
--blobs and --store comes from STOWAGE_S3_TEST_ENDPOINT, _ACCESS_KEY,
_BUCKET, _REGION and the secret in BENCH_S3_SECRET (or
STOWAGE_S3_TEST_SECRET_KEY). Progress goes to stderr.
"""

import argparse
import concurrent.futures
import datetime
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"

PER_REPO = 20  # manifests per repository
POOL = 20  # shared layers per repository
OWN_LAYERS = 3
SHARED_LAYERS = 3
DELETED = (0, 10)  # manifests deleted in every repository
CHECKED = 19  # manifest checked after the collections (shares layers with 0)
PUSHERS = 16
S3_WRITERS = 48


def log(message):
    print(f"bench_lifecycle: {message}", file=sys.stderr, flush=True)


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- state


def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# ---------------------------------------------------------------- HTTP


class Registry:
    """Requests to one registry over kept-alive connections, one per thread."""

    def __init__(self, addr):
        self.addr = addr
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.local = threading.local()
        self.requests = 0
        self.lock = threading.Lock()

    def _conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        return conn

    def request(self, method, path, body=None, headers=None):
        """(status, headers as a dict with lower-case names, body)."""
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
                with self.lock:
                    self.requests += 1
                return (response.status, {k.lower(): v for k, v in response.getheaders()},
                        data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                # A kept-alive connection the server closed: a new one.
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def expect(self, status, method, path, body=None, headers=None):
        got, answer_headers, data = self.request(method, path, body, headers)
        if got != status:
            raise RuntimeError(f"{method} http://{self.addr}{path}: {got}, expected {status}: "
                               f"{data[:300]!r}")
        return answer_headers, data

    def push_blob(self, repo, data):
        digest = digest_of(data)
        headers = {"Content-Type": "application/octet-stream"}
        status, answer, body = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data, headers)
        if status == 201:
            return
        if status != 202 or "location" not in answer:
            raise RuntimeError(f"POST of blob {digest} to {self.addr}/{repo}: {status} "
                               f"{body[:300]!r}")
        location = urllib.parse.urlsplit(answer["location"])
        query = location.query + ("&" if location.query else "") + f"digest={digest}"
        self.expect(201, "PUT", f"{location.path}?{query}", data, headers)

    def push_manifest(self, repo, reference, data):
        self.expect(201, "PUT", f"/v2/{repo}/manifests/{reference}", data,
                    {"Content-Type": MANIFEST})


def parse_targets(specs):
    targets = []
    for spec in specs:
        name, addr = spec.split("=", 1)
        targets.append((name, addr))
    return targets


def run_parallel(function, items, workers):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(function, item) for item in items]:
            future.result()


# ---------------------------------------------------------------- data set


def layer_bytes(*name):
    label = "stowage-lifecycle:" + ":".join(str(part) for part in name)
    return label.encode() + b"\n" + hashlib.sha256(label.encode()).digest() * 34


class Image:
    def __init__(self, repo, index, config, layers):
        self.repo, self.index = repo, index
        self.tag = f"m{index:02d}"
        self.config, self.layers = config, layers
        self.manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": digest_of(layer), "size": len(layer)}
                       for layer in layers],
        }, sort_keys=True, separators=(",", ":")).encode()
        self.digest = digest_of(self.manifest)


def dataset(repos):
    """{repo: (blobs {digest: bytes}, [Image])}."""
    out = {}
    for r in range(repos):
        repo = f"lifecycle/r{r:02d}"
        pool = [layer_bytes(repo, "shared", j) for j in range(POOL)]
        blobs, images = {}, []
        for i in range(PER_REPO):
            layers = [pool[(i + k) % POOL] for k in range(SHARED_LAYERS)]
            layers += [layer_bytes(repo, "own", i, k) for k in range(OWN_LAYERS)]
            config = json.dumps({
                "architecture": "amd64", "os": "linux",
                "config": {"Labels": {"bench": f"{repo} image {i}"}},
                "rootfs": {"type": "layers", "diff_ids": [digest_of(x) for x in layers]},
            }, sort_keys=True, separators=(",", ":")).encode()
            image = Image(repo, i, config, layers)
            images.append(image)
            for data in [config] + layers:
                blobs[digest_of(data)] = data
        out[repo] = (blobs, images)
    return out


def cmd_push(args, state):
    data = dataset(args.repos)
    if args.only_repos:
        data = dict(list(data.items())[:args.only_repos])
    blobs = sum(len(b) for b, _ in data.values())
    manifests = sum(len(i) for _, i in data.values())
    results = state.setdefault("push", {})
    for name, addr in parse_targets(args.target):
        registry = Registry(addr)
        started = time.perf_counter()
        uploads = [(repo, blob) for repo, (repo_blobs, _) in data.items()
                   for blob in repo_blobs.values()]
        run_parallel(lambda item: registry.push_blob(*item), uploads, PUSHERS)
        blobs_done = time.perf_counter()
        pushes = [image for _, images in data.values() for image in images]
        run_parallel(lambda image: registry.push_manifest(image.repo, image.tag, image.manifest),
                     pushes, PUSHERS)
        pushed = time.perf_counter()
        results[name] = {"repositories": len(data), "manifests": manifests, "blobs": blobs,
                         "requests": registry.requests, "blob_seconds": blobs_done - started,
                         "manifest_seconds": pushed - blobs_done}
        log(f"{name}: {blobs} blobs in {blobs_done - started:.1f} s "
            f"({blobs / (blobs_done - started):.0f}/s), "
            f"{manifests} manifests in {pushed - blobs_done:.1f} s ({registry.requests} requests)")
    state["repos"] = args.repos


def cmd_copy_tree(args, state):
    """Upload every file below --from to the same relative keys below
    --to-s3 (a copy of one registry's local storage into S3)."""
    files = []
    for directory, _, names in os.walk(args.source):
        for name in names:
            path = os.path.join(directory, name)
            files.append((os.path.relpath(path, args.source), path))
    s3 = S3()
    prefix = args.to_s3.strip("/")

    def upload(item):
        rel, path = item
        with open(path, "rb") as f:
            s3.put(f"{prefix}/{rel}", f.read())

    started = time.perf_counter()
    run_parallel(upload, files, S3_WRITERS)
    seconds = time.perf_counter() - started
    state.setdefault("copies", {})[args.name] = {"objects": len(files), "seconds": seconds,
                                                 "source": args.source_name}
    log(f"{args.name}: {len(files)} objects copied from {args.source_name}'s storage in "
        f"{seconds:.1f} s")


def cmd_delete(args, state):
    data = dataset(args.repos)
    deletes = [(repo, image) for repo, (_, images) in data.items()
               for image in images if image.index in DELETED]
    for name, addr in parse_targets(args.target):
        registry = Registry(addr)
        started = time.perf_counter()
        run_parallel(lambda item: registry.expect(
            202, "DELETE", f"/v2/{item[0]}/manifests/{item[1].digest}"), deletes, PUSHERS)
        seconds = time.perf_counter() - started
        first_repo, (_, first_images) = next(iter(data.items()))
        status = registry.request("GET", f"/v2/{first_repo}/manifests/m{DELETED[0]:02d}",
                                  headers={"Accept": MANIFEST})[0]
        if status != 404:
            sys.exit(f"{name}: the tag of a deleted manifest answers {status}, not 404")
        registry.expect(200, "GET", f"/v2/{first_repo}/manifests/{first_images[CHECKED].tag}",
                        headers={"Accept": MANIFEST})
        state.setdefault("delete", {})[name] = {"manifests": len(deletes), "seconds": seconds}
        log(f"{name}: {len(deletes)} manifests deleted in {seconds:.1f} s")
    state["expected_removed"] = len(deletes) * (2 + OWN_LAYERS)


def cmd_check(args, state):
    data = dataset(args.repos)
    for name, addr in parse_targets(args.target):
        registry = Registry(addr)
        items = []
        for repo, (_, images) in data.items():
            image = images[CHECKED]
            items.append(("manifest", repo, image.tag, image.digest))
            for blob in [image.config] + image.layers:
                items.append(("blob", repo, digest_of(blob), digest_of(blob)))
            items.append(("gone", repo, f"m{DELETED[0]:02d}", None))

        def check(item):
            kind, repo, ref, want = item
            if kind == "gone":
                status = registry.request("GET", f"/v2/{repo}/manifests/{ref}",
                                          headers={"Accept": MANIFEST})[0]
                if status != 404:
                    raise RuntimeError(f"{name}: deleted {repo}:{ref} answers {status}")
                return
            path = f"/v2/{repo}/{'manifests' if kind == 'manifest' else 'blobs'}/{ref}"
            _, body = registry.expect(200, "GET", path, headers={"Accept": MANIFEST})
            if digest_of(body) != want:
                raise RuntimeError(f"{name}: {path} came back with digest {digest_of(body)}")

        run_parallel(check, items, PUSHERS)
        log(f"{name}: after the collection, {len(data)} kept images (manifest and blobs) come "
            f"back intact, deleted tags are gone")
        state.setdefault("checks", {})[name] = "ok"


# ---------------------------------------------------------------- S3


class S3:
    """Path-style S3 requests signed with SigV4 (just PUT and ListObjectsV2):
    far less CPU per request than boto3, which matters at 100,000 PUTs."""

    def __init__(self):
        env = os.environ
        self.endpoint = urllib.parse.urlsplit(env["STOWAGE_S3_TEST_ENDPOINT"])
        self.access_key = env["STOWAGE_S3_TEST_ACCESS_KEY"]
        self.secret_key = env.get("BENCH_S3_SECRET") or env["STOWAGE_S3_TEST_SECRET_KEY"]
        self.bucket = env["STOWAGE_S3_TEST_BUCKET"]
        self.region = env.get("STOWAGE_S3_TEST_REGION") or "us-east-1"
        self.local = threading.local()
        self.keys = {}

    def _conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            cls = (http.client.HTTPSConnection if self.endpoint.scheme == "https"
                   else http.client.HTTPConnection)
            conn = self.local.conn = cls(self.endpoint.hostname, self.endpoint.port, timeout=120)
        return conn

    def _signing_key(self, date):
        key = self.keys.get(date)
        if key is None:
            key = ("AWS4" + self.secret_key).encode()
            for part in (date, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self.keys[date] = key
        return key

    def request(self, method, key, query=None, body=b""):
        path = "/" + self.bucket + ("/" + urllib.parse.quote(key, safe="/-_.~") if key else "")
        query_string = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted((query or {}).items()))
        amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": self.endpoint.netloc, "x-amz-content-sha256": payload,
                   "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, query_string,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                               signed, payload])
        scope = f"{amz_date[:8]}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(amz_date[:8]), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        headers["content-length"] = str(len(body))
        target = path + ("?" + query_string if query_string else "")
        for attempt in range(5):
            conn = self._conn()
            try:
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status in (500, 503) and attempt < 4:
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status != 200:
                raise RuntimeError(f"S3 {method} {target}: {response.status} {data[:300]!r}")
            return data
        raise AssertionError("unreachable")

    def put(self, key, body):
        self.request("PUT", key, body=body)

    def count(self, prefix):
        """The number of keys below PREFIX/."""
        prefix = prefix.strip("/") + "/"
        total, token = 0, None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self.request("GET", "", query))
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            total += len(root.findall(f"{ns}Contents"))
            truncated = root.findtext(f"{ns}IsTruncated") == "true"
            token = root.findtext(f"{ns}NextContinuationToken")
            if not truncated or not token:
                return total


def count_blobs(spec):
    kind, where = spec.split(":", 1)
    if kind == "fs":
        return sum(len(files) for _, _, files in os.walk(where))
    if kind == "s3":
        return S3().count(where)
    raise ValueError(f"--blobs {spec}: expected fs:DIR or s3:PREFIX")


# ---------------------------------------------------------------- gc


def rgw_requests(asok):
    """The requests RGW has served (its `rgw.req` perf counter, read from
    its admin socket): every S3 request, answered or failed."""
    out = subprocess.run(["ceph", "--admin-daemon", asok, "perf", "dump", "rgw"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["rgw"]["req"]


def proxy_requests(url):
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)["requests"]


def request_counter(args):
    if args.rgw_asok:
        return lambda: rgw_requests(args.rgw_asok)
    if args.stats:
        return lambda: proxy_requests(args.stats)
    return None


def cmd_gc(args, state):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        sys.exit("gc: no command given (after --)")
    before_blobs = count_blobs(args.blobs) if args.blobs else None
    counter = request_counter(args)
    before_requests = counter() if counter else None
    out_path = os.path.join(os.path.dirname(os.path.abspath(args.state)), f"gc-{args.name}.out")
    log(f"{args.name}: {' '.join(command)}")
    started = time.perf_counter()
    with open(out_path, "w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    with open(out_path) as f:
        output = f.read()
    if result.returncode != 0:
        sys.exit(f"{args.name}: the collection failed (exit {result.returncode}):\n"
                 f"{output[-3000:]}")
    requests = counter() - before_requests if counter else None
    after_blobs = count_blobs(args.blobs) if args.blobs else None
    reported = None
    m = re.search(r"^removed (\d+) blobs \((\d+) bytes", output, re.M)
    if m:
        reported = int(m.group(1))
    m = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion",
                  output)
    if m:
        reported = int(m.group(2))
    row = {"name": args.name, "storage": args.storage, "seconds": seconds,
           "requests": requests, "reported_removed": reported,
           "blobs_before": before_blobs, "blobs_after": after_blobs,
           "stopped": args.stopped, "command": " ".join(command)}
    for line in output.splitlines():
        if re.match(r"^(removed \d+ blobs|kept )", line) or "eligible for deletion" in line:
            log(f"{args.name}: {line.strip()}")
    log(f"{args.name}: {seconds:.1f} s, {requests if requests is not None else '-'} storage "
        f"requests, blob objects {before_blobs} -> {after_blobs}")
    expected = state.get("expected_removed")
    if (expected is not None and before_blobs is not None and after_blobs is not None
            and before_blobs - after_blobs != expected):
        sys.exit(f"{args.name}: {before_blobs - after_blobs} blob objects went, expected "
                 f"{expected}; output in {out_path}")
    state.setdefault("gc", [])
    state["gc"] = [r for r in state["gc"] if r["name"] != args.name] + [row]


# ---------------------------------------------------------------- tags


def tag_name(n):
    return f"t{n:06d}"


def tag_files(layout, repo, tag, digest):
    """(relative path, content) of the objects that make `tag` a tag."""
    if layout == "stowage":
        return [(f"repositories/{repo}/_manifests/tags/{tag}", digest.encode())]
    if layout == "distribution":
        base = f"docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}"
        algorithm, hexd = digest.split(":")
        return [(f"{base}/current/link", digest.encode()),
                (f"{base}/index/{algorithm}/{hexd}/link", digest.encode())]
    raise ValueError(f"unknown layout {layout}")


def write_tags(spec, repo, tags, digest):
    layout, kind, root = spec.split(":", 2)
    files = [f for tag in tags for f in tag_files(layout, repo, tag, digest)]
    if kind == "fs":
        made = set()
        for rel, content in files:
            path = os.path.join(root, rel)
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            with open(path, "wb") as f:
                f.write(content)
        return len(files)
    if kind == "s3":
        s3 = S3()
        prefix = root.strip("/")
        run_parallel(lambda f: s3.put(f"{prefix}/{f[0]}" if prefix else f[0], f[1]), files,
                     S3_WRITERS)
        return len(files)
    raise ValueError(f"--store {spec}: KIND must be fs or s3")


def base_image():
    layer = layer_bytes("tags", "layer")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}},
                        sort_keys=True, separators=(",", ":")).encode()
    return Image("", 0, config, [layer])


def cmd_seed_tags(args, state):
    image = base_image()
    stores = dict(s.split("=", 1) for s in args.store)
    results = state.setdefault("seed", {})
    api_tags = [tag_name(n) for n in range(min(args.api_tags, args.tags))]
    direct_tags = [tag_name(n) for n in range(len(api_tags), args.tags)]
    for name, addr in parse_targets(args.target):
        registry = Registry(addr)
        for blob in [image.config] + image.layers:
            registry.push_blob(args.repo, blob)
        registry.push_manifest(args.repo, "base", image.manifest)
        started = time.perf_counter()
        run_parallel(lambda tag: registry.push_manifest(args.repo, tag, image.manifest),
                     api_tags, PUSHERS)
        api_seconds = time.perf_counter() - started
        started = time.perf_counter()
        objects = write_tags(stores[name], args.repo, direct_tags, image.digest) \
            if direct_tags else 0
        direct_seconds = time.perf_counter() - started
        last = tag_name(args.tags - 1)
        headers, _ = registry.expect(200, "GET", f"/v2/{args.repo}/manifests/{last}",
                                     headers={"Accept": MANIFEST})
        if headers.get("docker-content-digest", image.digest) != image.digest:
            sys.exit(f"{name}: tag {last} resolves to {headers.get('docker-content-digest')}")
        rate = len(api_tags) / api_seconds if api_tags else None
        results[name] = {"api_tags": len(api_tags), "api_seconds": api_seconds,
                         "api_rate": rate, "direct_tags": len(direct_tags),
                         "direct_objects": objects, "direct_seconds": direct_seconds,
                         "method": stores[name].split(":", 2)[1]}
        log(f"{name}: {len(api_tags)} tags through the API in {api_seconds:.1f} s "
            f"({rate or 0:.0f}/s: {args.tags} would take "
            f"{args.tags / rate / 60 if rate else 0:.1f} "
            f"min), {len(direct_tags)} written to storage ({objects} objects) in "
            f"{direct_seconds:.1f} s")
    state["tags"] = {"repo": args.repo, "count": args.tags}


# ---------------------------------------------------------------- paging


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def cmd_paging(args, state):
    endpoints = [
        ("tags, first page", f"/v2/{args.repo}/tags/list?n=100"),
        (f"tags, page after {args.middle}", f"/v2/{args.repo}/tags/list?n=100&last={args.middle}"),
        ("catalog, first page", "/v2/_catalog?n=100"),
    ]
    pairs = []
    for spec in args.pair:
        label, addrs = spec.split("=", 1)
        stowage, distribution = addrs.split(",")
        pairs.append((label, {"stowage": stowage, "distribution": distribution}))
    samples = {}  # (label, endpoint, who) -> [seconds]
    answers = {}  # (label, endpoint, who) -> what the last answer held
    per_round = args.budget / args.rounds
    for r in range(args.rounds):
        order = ["stowage", "distribution"] if r % 2 == 0 else ["distribution", "stowage"]
        for label, addrs in pairs:
            for endpoint, path in endpoints:
                for who in order:
                    host, port = addrs[who].rsplit(":", 1)
                    conn = http.client.HTTPConnection(host, int(port), timeout=600)
                    spent = 0.0
                    times = samples.setdefault((label, endpoint, who), [])
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        conn.request("GET", path)
                        response = conn.getresponse()
                        body = response.read()
                        took = time.perf_counter() - started
                        if response.status != 200:
                            sys.exit(f"{who} {label} GET {path}: {response.status} {body[:300]!r}")
                        times.append(took)
                        spent += took
                        if spent >= per_round:
                            break
                    conn.close()
                    doc = json.loads(body)
                    items = doc.get("tags", doc.get("repositories")) or []
                    answers[(label, endpoint, who)] = {
                        "items": len(items), "bytes": len(body),
                        "next": "link" in {k.lower() for k, _ in response.getheaders()},
                        "first": items[0] if items else None}
                    log(f"round {r + 1}: {label} {endpoint} {who}: median "
                        f"{statistics.median(times[-args.requests:]) * 1000:.1f} ms "
                        f"({len(items)} entries, {len(body)} bytes)")
    rows = []
    for label, _ in pairs:
        for endpoint, path in endpoints:
            row = {"storage": label, "endpoint": endpoint, "path": path}
            for who in ("stowage", "distribution"):
                times = samples[(label, endpoint, who)]
                row[who] = {"median": statistics.median(times), "p90": percentile(times, 0.9),
                            "n": len(times), **answers[(label, endpoint, who)]}
            rows.append(row)
    state["paging"] = rows


# ---------------------------------------------------------------- report


def fmt_seconds(value):
    return "-" if value is None else f"{value:.1f}"


def fmt_ms(value):
    return f"{value * 1000:.1f}" if value < 10 else f"{value * 1000:.0f}"


def fmt_ratio(value):
    if value >= 10:
        return f"{value:.0f}x"
    if value >= 1:
        return f"{value:.2f}x"
    return f"{value:.2g}x"


def storage_label(name):
    return "S3 (RGW)" if name.endswith("s3") else "local"


def cmd_report(args, state):
    print()
    pushes = state.get("push", {})
    if pushes:
        full = max(pushes.values(), key=lambda row: row["repositories"])
        deleted = next(iter(state.get("delete", {}).values()), {}).get("manifests")
        print(f"### Set-up (not the benchmark): {full['repositories']} repositories, "
              f"{full['manifests']} manifests, {full['blobs']} blobs; {deleted} manifests "
              "deleted through the API")
        print()
        print("| registry | pushed through the API | blobs, s (per s) | manifests, s | "
              "HTTP requests | the rest | deletes, s |")
        print("|---|---|---|---|---|---|---|")
        copies = state.get("copies", {})
        for name, row in pushes.items():
            rest = "-"
            if name in copies:
                copy = copies[name]
                rest = (f"{copy['objects']} objects copied from {copy['source']}'s storage in "
                        f"{copy['seconds']:.1f} s")
            delete = state.get("delete", {}).get(name, {})
            repos = f"{row['repositories']} repositor{'y' if row['repositories'] == 1 else 'ies'}"
            print(f"| {name} | {repos} | {row['blob_seconds']:.1f} "
                  f"({row['blobs'] / row['blob_seconds']:.0f}) | {row['manifest_seconds']:.1f} | "
                  f"{row['requests']} | {rest} | {delete.get('seconds', 0):.1f} |")
        print()
        print("stowage takes each blob in one monolithic POST; distribution 2.8 ignores the "
              "digest of a POST and needs a PUT as well.")
        print()
    gc_rows = state.get("gc", [])
    if gc_rows:
        print(f"### Garbage collection (expected to remove {state.get('expected_removed')} "
              "blobs)")
        print()
        print("| storage | collector | registry meanwhile | seconds | storage requests | "
              "blobs removed (reported) | blob objects before -> after |")
        print("|---|---|---|---|---|---|---|")
        for row in gc_rows:
            who = "stowage gc --grace 0s" if row["name"].startswith("stowage") \
                else "docker-registry garbage-collect"
            meanwhile = "stopped (distribution needs it)" if row["stopped"] else "serving"
            requests = "-" if row["requests"] is None else str(row["requests"])
            objects = "-" if row["blobs_before"] is None \
                else f"{row['blobs_before']} -> {row['blobs_after']}"
            print(f"| {storage_label(row['name'])} | {who} | {meanwhile} | "
                  f"{row['seconds']:.1f} | {requests} | {row['reported_removed']} | {objects} |")
        print()
        by_name = {row["name"]: row for row in gc_rows}
        for suffix in ("s3", "local"):
            s, d = by_name.get(f"stowage-{suffix}"), by_name.get(f"distribution-{suffix}")
            if not s or not d:
                continue
            line = (f"- {storage_label(suffix)}: distribution / stowage time "
                    f"**{fmt_ratio(d['seconds'] / s['seconds'])}**")
            if s["requests"] and d["requests"]:
                line += f", storage requests **{fmt_ratio(d['requests'] / s['requests'])}**"
            print(line)
        print()
        print("Storage requests: the S3 requests RGW served while the collector ran (its "
              "`rgw.req` counter; nothing else sends any then: the registries left running "
              "are idle). Local rows have no request count.")
        print()
    seed = state.get("seed", {})
    if seed:
        tags = state.get("tags", {})
        print(f"### {tags.get('count')} tags in {tags.get('repo')}: how they were made")
        print()
        print("| registry | through the API (PUT manifest by tag) | API rate | all of them "
              "through the API would take | written to storage | seconds |")
        print("|---|---|---|---|---|---|")
        for name, row in seed.items():
            rate = row["api_rate"]
            estimate = f"{tags.get('count', 0) / rate / 60:.1f} min" if rate else "-"
            method = "files" if row["method"] == "fs" else "S3 PUTs"
            print(f"| {name} | {row['api_tags']} | {rate or 0:.0f}/s | {estimate} | "
                  f"{row['direct_tags']} tags ({row['direct_objects']} {method}) | "
                  f"{row['direct_seconds']:.1f} |")
        print()
        print("The API rates are measured minutes after the collections, while stowage's "
              "manifest PUTs take the careful path of the collection protocol (a used marker, "
              "a tombstone listing and a metadata read per blob, for 30 minutes after a run; "
              "docs/registry.md).")
        print()
    paging = state.get("paging", [])
    if paging:
        print("### Tag and catalog pages (latency per request, ms)")
        print()
        print("| storage | request | stowage median (p90, n) | distribution median (p90, n) | "
              "distribution / stowage | entries in the answer: stowage, distribution |")
        print("|---|---|---|---|---|---|")
        notes = set()
        for row in paging:
            s, d = row["stowage"], row["distribution"]
            mark = ""
            if row["endpoint"].startswith("tags") and d["items"] > 100:
                mark = " (a)"
                notes.add("a")
            print(f"| {storage_label(row['storage'])} | `{row['path']}` | "
                  f"{fmt_ms(s['median'])} ({fmt_ms(s['p90'])}, {s['n']}) | "
                  f"{fmt_ms(d['median'])} ({fmt_ms(d['p90'])}, {d['n']}) | "
                  f"**{fmt_ratio(d['median'] / s['median'])}**{mark} | "
                  f"{s['items']}{' + Link' if s['next'] else ''}, "
                  f"{d['items']}{' + Link' if d['next'] else ''} ({d['bytes']} bytes) |")
        print()
        if "a" in notes:
            print("(a) distribution 2.8 ignores `n` and `last` on the tag list: every answer "
                  "is the whole list, read from the whole tag directory, so the ratio compares "
                  "what a client asking for one page waits, not the same work.")
            print()
    if args.started:
        took = time.time() - args.started
        print(f"The run took {took / 60:.1f} minutes ({took:.0f} s).")


# ---------------------------------------------------------------- main


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True)
    sub = parser.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("push")
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--repos", type=int, default=50)
    p.add_argument("--only-repos", type=int, default=0)
    p = sub.add_parser("copy-tree")
    p.add_argument("--name", required=True)
    p.add_argument("--from", dest="source", required=True)
    p.add_argument("--source-name", required=True)
    p.add_argument("--to-s3", required=True)
    p = sub.add_parser("delete")
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--repos", type=int, default=50)
    p = sub.add_parser("check")
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--repos", type=int, default=50)
    p = sub.add_parser("gc")
    p.add_argument("--name", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--rgw-asok")
    p.add_argument("--stats")
    p.add_argument("--blobs")
    p.add_argument("--stopped", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("seed-tags")
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--store", action="append", required=True)
    p.add_argument("--repo", default="lifecycle/tags")
    p.add_argument("--tags", type=int, default=100000)
    p.add_argument("--api-tags", type=int, default=200)
    p = sub.add_parser("paging")
    p.add_argument("--pair", action="append", required=True)
    p.add_argument("--repo", default="lifecycle/tags")
    p.add_argument("--middle", default=tag_name(50000))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--requests", type=int, default=5)
    p.add_argument("--budget", type=float, default=60.0)
    p = sub.add_parser("report")
    p.add_argument("--started", type=float)
    args = parser.parse_args(argv)
    state = load_state(args.state)
    phase = {"push": cmd_push, "copy-tree": cmd_copy_tree, "delete": cmd_delete,
             "check": cmd_check, "gc": cmd_gc,
             "seed-tags": cmd_seed_tags, "paging": cmd_paging, "report": cmd_report}[args.phase]
    phase(args, state)
    if args.phase != "report":
        save_state(args.state, state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
