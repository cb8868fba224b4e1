#!/usr/bin/env python3
"""Benchmark image push and pull against several registries with skopeo.

Meant to compare stowage's registry with distribution on the same storage.
Each round pushes the image to every target, then pulls it back from every
target K times (--pulls-per-round; a pull is faster and noisier than a push,
so it gets more samples). For each transfer it measures wall time, the
server's peak resident memory and the CPU time the server spent (utime +
stime from /proc/PID/stat):

  for each round:
    for each target (order reversed every other round):
      reset the server's peak RSS (echo 5 > /proc/PID/clear_refs); push
      OCI_DIR:TAG with skopeo to a new repository PREFIX/r{round}-{n}:TAG
      (n = the target's position on the command line, from 1), timed; read
      VmHWM from /proc/PID/status;
    run --before-pulls, if given (not timed);
    K times:
      for each target (order reversed every other time): reset again, pull
      that repository with skopeo into a new temporary OCI directory
      (deleted afterwards), timed; read VmHWM;
      for each target, same order: reset again, GET all its layer blobs at
      once with curl, bytes discarded (sizes checked), timed; read VmHWM.
      A skopeo pull is bound by skopeo itself (it hashes and writes every
      byte); the GETs show how fast the server delivers when the client
      keeps up.

Before every timed transfer dirty pages are written back (sync), so no
transfer pays for writing back the data of an earlier one (the page cache
itself is kept: pulls read cached files, as a busy server would).

Pure transfer: skopeo runs with --preserve-digests, so it pushes and stores
the layers byte for byte (by default it would gzip uncompressed layers on
push and on writing an OCI directory), and each run gets its own empty blob
info cache, as skopeo would otherwise mount blobs from repositories it pushed
to earlier instead of uploading them. The digest skopeo reports after the
push and the one in the pulled directory must equal the image's.

Afterwards it prints a markdown table, a row per target and transfer kind
(medians of the times, max of the peaks, throughput from the median) and, for each pair of targets
named stowage-SUFFIX and distribution-SUFFIX, the median of the ratios
distribution time / stowage time (> 1: stowage faster) over the pairs of
transfers made in the same round (and pull attempt).
Every measurement goes to RESULTS.json. Progress goes to stderr.

The servers must be running and empty of the repositories used (checked).
PID must be the server process itself (not a wrapper script); writing
clear_refs needs the same user or root.

CLI:
  bench_registries.py --image OCI_DIR --tag TAG --rounds R
      --target NAME=HOST:PORT:PID [--target ...] --out RESULTS.json
      [--repo-prefix PREFIX]   (default bench)
      [--between-rounds SHELL_COMMAND]   (run before every round but the first)
      [--pulls-per-round K]   (default 1)
      [--before-pulls SHELL_COMMAND]   (run in every round after the pushes)

Example:
  make_oci_image.py /tmp/img --layers 8 --layer-mib 128 --tag bench
  bench_registries.py --image /tmp/img --tag bench --rounds 5 \\
      --target stowage-local=127.0.0.1:5000:4242 \\
      --target distribution-local=127.0.0.1:5001:4343 --out results.json
"""

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

MIB = 1 << 20
MANIFEST_ACCEPT = ("application/vnd.oci.image.manifest.v1+json, "
                   "application/vnd.docker.distribution.manifest.v2+json")
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


class BenchError(Exception):
    pass


# --- inputs -------------------------------------------------------------------

def parse_target(spec):
    """NAME=HOST:PORT:PID -> dict."""
    try:
        name, address = spec.split("=", 1)
        host, port, pid = address.rsplit(":", 2)
        target = {"name": name, "host": host, "port": int(port), "pid": int(pid)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT:PID, got {spec!r}")
    if not name:
        raise argparse.ArgumentTypeError(f"empty target name in {spec!r}")
    return target


def read_image(oci_dir, tag):
    """Manifest digest and the bytes a push transfers, from the OCI layout."""
    with open(os.path.join(oci_dir, "index.json")) as file:
        index = json.load(file)
    for descriptor in index.get("manifests", []):
        if (descriptor.get("annotations") or {}).get(REF_NAME_ANNOTATION) == tag:
            break
    else:
        raise BenchError(f"no manifest tagged {tag!r} in {oci_dir}/index.json")
    algorithm, hex_digest = descriptor["digest"].split(":", 1)
    with open(os.path.join(oci_dir, "blobs", algorithm, hex_digest)) as file:
        manifest = json.load(file)
    blobs = manifest["layers"] + [manifest["config"]]
    return {
        "dir": os.path.abspath(oci_dir),
        "tag": tag,
        "manifest_digest": descriptor["digest"],
        "layers": len(manifest["layers"]),
        "layer_blobs": [{"digest": layer["digest"], "size": layer["size"]}
                        for layer in manifest["layers"]],
        "total_bytes": descriptor["size"] + sum(blob["size"] for blob in blobs),
    }


# USER:PASSWORD for registries with basic auth (BENCH_CREDS), else None.
CREDS = os.environ.get("BENCH_CREDS") or None


def auth_headers():
    if not CREDS:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(CREDS.encode()).decode()}


def manifest_status(target, repository, tag):
    """HTTP status of HEAD /v2/<repository>/manifests/<tag> (200 or 404 expected)."""
    url = f"http://{target['host']}:{target['port']}/v2/{repository}/manifests/{tag}"
    request = urllib.request.Request(url, method="HEAD",
                                     headers={"Accept": MANIFEST_ACCEPT, **auth_headers()})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError as error:
        raise BenchError(f"{target['name']}: {url} not reachable: {error.reason}")


def check_target(target, rounds, prefix, tag):
    """The server answers, its PID is ours to measure, and the repositories are new."""
    if not os.path.exists(f"/proc/{target['pid']}/status"):
        raise BenchError(f"{target['name']}: no process {target['pid']}")
    reset_peak_rss(target["pid"])
    for round_number in range(1, rounds + 1):
        repository = repository_name(prefix, round_number, target["position"])
        status = manifest_status(target, repository, tag)
        if status != 404:
            raise BenchError(
                f"{target['name']}: {repository}:{tag} answered {status}, expected 404 "
                "(already pushed? use another --repo-prefix or empty the server's storage)")


def repository_name(prefix, round_number, position):
    return f"{prefix}/r{round_number}-{position}"


# --- measurements -------------------------------------------------------------

def reset_peak_rss(pid):
    """Reset VmHWM to the current RSS."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as file:
            file.write("5")
    except OSError as error:
        raise BenchError(f"cannot reset the peak RSS of process {pid}: {error}")


def memory_kib(pid):
    """(VmHWM, VmRSS) of the process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
    return values["VmHWM"], values["VmRSS"]


def cpu_seconds(pid):
    """User plus system CPU time the process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as file:
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = file.read().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_skopeo(arguments):
    """Run `skopeo copy` with an empty blob info cache of its own; returns seconds taken.

    containers/image keeps its blob info cache under $XDG_DATA_HOME, except for
    root, who always gets /var/lib/containers/cache unless the process counts
    as rootless (_CONTAINERS_ROOTLESS_UID); so both are set.
    """
    with tempfile.TemporaryDirectory(prefix="bench-skopeo-home-") as home:
        env = dict(os.environ, XDG_DATA_HOME=os.path.join(home, "data"),
                   XDG_RUNTIME_DIR=os.path.join(home, "run"))
        if os.geteuid() == 0:
            env["_CONTAINERS_ROOTLESS_UID"] = "65534"
        os.mkdir(env["XDG_RUNTIME_DIR"], 0o700)
        start = time.monotonic()
        result = subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", *arguments],
                                env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise BenchError(f"skopeo copy {' '.join(arguments)} failed "
                         f"(exit {result.returncode}): {result.stderr.strip()[-2000:]}")
    return elapsed


def measure(pid, transfer):
    """Run transfer() -> seconds, with the server's peak RSS reset before it;
    also the CPU time the server spent meanwhile."""
    # Dirty pages of earlier transfers are written back first (the cache is
    # kept), so that no transfer pays for the writeback of another.
    os.sync()
    reset_peak_rss(pid)
    _, rss_before = memory_kib(pid)
    cpu_before = cpu_seconds(pid)
    seconds = transfer()
    cpu = cpu_seconds(pid) - cpu_before
    peak, _ = memory_kib(pid)
    return {"seconds": seconds, "peak_rss_kib": peak, "rss_before_kib": rss_before,
            "server_cpu_seconds": cpu}


def push(image, reference, workdir):
    digest_file = os.path.join(workdir, "pushed-digest")
    creds = ["--dest-creds", CREDS] if CREDS else []
    seconds = run_skopeo([
        *creds, "--dest-tls-verify=false", "--digestfile", digest_file,
        f"oci:{image['dir']}:{image['tag']}", f"docker://{reference}"])
    with open(digest_file) as file:
        pushed = file.read().strip()
    if pushed != image["manifest_digest"]:
        raise BenchError(f"pushed manifest {pushed} differs from the image's "
                         f"{image['manifest_digest']} (skopeo changed the image?)")
    return seconds


def pull(image, reference, workdir):
    layout = os.path.join(workdir, "pulled")
    try:
        creds = ["--src-creds", CREDS] if CREDS else []
        seconds = run_skopeo([
            *creds, "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers",
            f"docker://{reference}", f"oci:{layout}:{image['tag']}"])
        pulled = read_image(layout, image["tag"])["manifest_digest"]
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    if pulled != image["manifest_digest"]:
        raise BenchError(f"pulled manifest {pulled} differs from the image's "
                         f"{image['manifest_digest']}")
    return seconds


def get_layers(image, target, repository):
    """GET every layer blob at once with curl, bytes discarded; returns
    seconds taken. The server, not the client, is then the slow side (curl
    neither hashes nor writes), unlike a skopeo pull."""
    base = f"http://{target['host']}:{target['port']}/v2/{repository}/blobs/"
    start = time.monotonic()
    creds = ["-u", CREDS] if CREDS else []
    running = [(blob, subprocess.Popen(
        ["curl", "-sS", *creds, "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
         base + blob["digest"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for blob in image["layer_blobs"]]
    outcomes = [(blob, *process.communicate(), process.returncode)
                for blob, process in running]
    elapsed = time.monotonic() - start
    for blob, out, err, code in outcomes:
        if code != 0 or out.split() != ["200", str(blob["size"])]:
            raise BenchError(f"GET {base}{blob['digest']}: curl exit {code}, got {out!r} "
                             f"(expected 200 and {blob['size']} bytes) {err.strip()}")
    return elapsed


def reference_of(image, target, round_number, prefix):
    """(repository, skopeo reference) of the target's image in this round."""
    repository = repository_name(prefix, round_number, target["position"])
    return repository, f"{target['host']}:{target['port']}/{repository}:{image['tag']}"


def round_order(targets, turn):
    """The targets in command-line order on odd turns, reversed on even ones."""
    return targets if turn % 2 == 1 else targets[::-1]


def measure_and_report(target, round_number, label, transfer):
    """measure() the transfer on the target's server and print a progress line."""
    result = measure(target["pid"], transfer)
    print(f"round {round_number} {target['name']}: {label} {result['seconds']:.2f}s "
          f"peak {result['peak_rss_kib'] / 1024:.0f} MiB "
          f"cpu {result['server_cpu_seconds']:.2f}s", file=sys.stderr, flush=True)
    return result


def run_rounds(image, targets, rounds, prefix, between_rounds=None, pulls_per_round=1,
               before_pulls=None):
    """Per round: push to every target, then pull from every target
    pulls_per_round times, the order of targets reversed every other turn."""
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-registries-") as workdir:
        for round_number in range(1, rounds + 1):
            if between_rounds and round_number > 1:
                # E.g. free the storage of the previous round (an in-memory
                # test server fills up); not timed.
                subprocess.run(between_rounds, shell=True, check=True)
            mine = {}
            for target in round_order(targets, round_number):
                repository, reference = reference_of(image, target, round_number, prefix)
                pushed = measure_and_report(target, round_number, "push",
                                            lambda: push(image, reference, workdir))
                mine[target["name"]] = {"round": round_number, "target": target["name"],
                                        "repository": repository, "push": pushed, "pulls": [],
                                        "gets": []}
            if before_pulls:
                # E.g. let the storage finish the work the pushes left
                # behind (garbage collection), so no pull pays for it.
                subprocess.run(before_pulls, shell=True, check=True)
            for attempt in range(1, pulls_per_round + 1):
                order = round_order(targets, round_number + attempt - 1)
                for target in order:
                    _, reference = reference_of(image, target, round_number, prefix)
                    mine[target["name"]]["pulls"].append(measure_and_report(
                        target, round_number, f"pull {attempt}",
                        lambda: pull(image, reference, workdir)))
                for target in order:
                    repository, _ = reference_of(image, target, round_number, prefix)
                    mine[target["name"]]["gets"].append(measure_and_report(
                        target, round_number, f"get {attempt}",
                        lambda: get_layers(image, target, repository)))
            records.extend(mine[target["name"]] for target in targets)
    return records


OPS = ("push", "pull", "get")


def transferred_bytes(image, op):
    """Bytes a transfer moves: the whole image, or (get) its layers."""
    if op == "get":
        return sum(blob["size"] for blob in image["layer_blobs"])
    return image["total_bytes"]


def transfers(record, op):
    """The measurements of one round's push (one), pulls or gets (one or more each)."""
    return [record["push"]] if op == "push" else record[op + "s"]


# --- summary ------------------------------------------------------------------

def summarize_target(name, measurements, image):
    mine = [m for m in measurements if m["target"] == name]
    summary = {}
    for op in OPS:
        runs = [t for m in mine for t in transfers(m, op)]
        median = statistics.median(t["seconds"] for t in runs)
        summary[op] = {
            "transfers": len(runs),
            "median_seconds": median,
            "median_mib_per_second": transferred_bytes(image, op) / MIB / median,
            "max_peak_rss_mib": max(t["peak_rss_kib"] for t in runs) / 1024,
            "median_server_cpu_seconds": statistics.median(
                t["server_cpu_seconds"] for t in runs),
        }
    return summary


def compare_pairs(targets, measurements):
    """Median distribution/stowage time ratios for stowage-X vs distribution-X,
    pairing the transfers of the same round (and, for pulls, the same attempt)."""
    names = {target["name"] for target in targets}
    seconds = {(m["target"], m["round"], op): [t["seconds"] for t in transfers(m, op)]
               for m in measurements for op in OPS}
    rounds = sorted({m["round"] for m in measurements})
    comparisons = {}
    for name in sorted(names):
        if not name.startswith("stowage-"):
            continue
        baseline = "distribution-" + name[len("stowage-"):]
        if baseline not in names:
            continue
        comparison = {"baseline": baseline}
        for op in OPS:
            ratios = [theirs / ours for r in rounds
                      for theirs, ours in zip(seconds[(baseline, r, op)], seconds[(name, r, op)])]
            comparison[op] = {"ratios": ratios, "median_ratio": statistics.median(ratios)}
        comparisons[name] = comparison
    return comparisons


def markdown_table(targets, summaries, comparisons):
    lines = ["| target | transfer | n | median s | MiB/s | peak RSS MiB (max) "
             "| server CPU s (median) | distribution/stowage (median) |",
             "|" + "---|" * 8]
    for target in targets:
        name = target["name"]
        comparison = comparisons.get(name)
        for op in OPS:
            s = summaries[name][op]
            ratio = f"{comparison[op]['median_ratio']:.2f}" if comparison else "–"
            lines.append(
                f"| {name} | {op} | {s['transfers']} | {s['median_seconds']:.2f} "
                f"| {s['median_mib_per_second']:.0f} | {s['max_peak_rss_mib']:.0f} "
                f"| {s['median_server_cpu_seconds']:.2f} | {ratio} |")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------

def skopeo_version():
    result = subprocess.run(["skopeo", "--version"], capture_output=True, text=True)
    return result.stdout.strip()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Interleaved skopeo push/pull benchmark of registries (time and peak RSS).")
    parser.add_argument("--image", required=True, metavar="OCI_DIR")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--rounds", type=int, required=True, metavar="R")
    parser.add_argument("--target", type=parse_target, action="append", required=True,
                        metavar="NAME=HOST:PORT:PID")
    parser.add_argument("--out", required=True, metavar="RESULTS.json")
    parser.add_argument("--repo-prefix", default="bench", metavar="PREFIX")
    parser.add_argument("--between-rounds", metavar="SHELL_COMMAND",
                        help="run before every round but the first (not timed)")
    parser.add_argument("--pulls-per-round", type=int, default=1, metavar="K",
                        help="pull each pushed image K times per round (default 1)")
    parser.add_argument("--before-pulls", metavar="SHELL_COMMAND",
                        help="run in every round between the pushes and the pulls (not timed)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.pulls_per_round < 1:
        parser.error("--pulls-per-round must be at least 1")
    names = [target["name"] for target in args.target]
    if len(set(names)) != len(names):
        parser.error(f"target names must be distinct: {names}")
    for position, target in enumerate(args.target, start=1):
        target["position"] = position
    return args


def main(argv):
    args = parse_args(argv)
    if shutil.which("skopeo") is None:
        print("bench_registries.py: skopeo not found (apt-get install skopeo)", file=sys.stderr)
        return 2
    try:
        image = read_image(args.image, args.tag)
        for target in args.target:
            check_target(target, args.rounds, args.repo_prefix, args.tag)
        started = time.time()
        measurements = run_rounds(image, args.target, args.rounds, args.repo_prefix,
                                  args.between_rounds, args.pulls_per_round, args.before_pulls)
    except (BenchError, OSError) as error:
        print(f"bench_registries.py: {error}", file=sys.stderr)
        return 1
    summaries = {t["name"]: summarize_target(t["name"], measurements, image)
                 for t in args.target}
    comparisons = compare_pairs(args.target, measurements)
    results = {
        "image": image,
        "rounds": args.rounds,
        "pulls_per_round": args.pulls_per_round,
        "skopeo": skopeo_version(),
        "started_unix": started,
        "finished_unix": time.time(),
        "targets": args.target,
        "measurements": measurements,
        "summary": summaries,
        "comparisons": comparisons,
    }
    with open(args.out, "w") as file:
        json.dump(results, file, indent=2)
        file.write("\n")
    print(markdown_table(args.target, summaries, comparisons))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
