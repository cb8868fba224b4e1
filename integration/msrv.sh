#!/usr/bin/env bash
# The workspace's rust-version is true to the lock file: no package in the
# resolved graph of Cargo.lock declares a rust-version above that of the
# workspace member that pulls it in. Fails naming each such package, what it
# needs, and the chain of dependencies that brings it in.
#
# Reads `cargo metadata --locked` (no build; the lock file is used as it is)
# with --all-features, so the opt-in features' dependencies (the pure-Rust
# CloudFront signer's) are checked too. Dev-dependencies of the workspace
# members count: the tests must build with the declared version as well.
# Packages that declare no rust-version are not judged.
set -euo pipefail
cd "$(dirname "$0")/.."

metadata=$(mktemp)
trap 'rm -f "$metadata"' EXIT
cargo metadata --format-version 1 --locked --all-features > "$metadata"

python3 - "$metadata" <<'EOF'
import json
import sys
from collections import deque

with open(sys.argv[1]) as f:
    meta = json.load(f)
pkgs = {p["id"]: p for p in meta["packages"]}
deps = {n["id"]: [d["pkg"] for d in n["deps"]] for n in meta["resolve"]["nodes"]}


def version(text):
    parts = [int(x) for x in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def label(pid):
    return f'{pkgs[pid]["name"]} {pkgs[pid]["version"]}'


problems = []
offenders = {}  # package id -> its report, from the first member that pulls it in
for member in meta["workspace_members"]:
    declared = pkgs[member].get("rust_version")
    if not declared:
        problems.append(f"{label(member)} declares no rust-version")
        continue
    # Breadth first, so each offender comes with its shortest chain.
    via = {member: None}
    queue = deque([member])
    while queue:
        pid = queue.popleft()
        for dep in deps.get(pid, []):
            if dep not in via:
                via[dep] = pid
                queue.append(dep)
    for pid in via:
        need = pkgs[pid].get("rust_version")
        if need and version(need) > version(declared) and pid not in offenders:
            chain, step = [], pid
            while step is not None:
                chain.append(pkgs[step]["name"])
                step = via[step]
            chain = " -> ".join(reversed(chain))
            member_name = pkgs[member]["name"]
            offenders[pid] = (
                version(need),
                f"{label(pid)} needs rust {need}, above the rust-version {declared} "
                f"of {member_name} (via {chain})",
            )

# The highest needs first: raising rust-version to the first one clears all.
problems += [report for _, report in sorted(offenders.values(), key=lambda o: o[0], reverse=True)]
if problems:
    for problem in problems:
        print(f"msrv: {problem}", file=sys.stderr)
    print(
        "msrv: raise rust-version in the root Cargo.toml ([workspace.package]) and "
        "say so in CHANGELOG.md (a minor release), or hold those packages back "
        "in Cargo.lock (cargo update --precise)",
        file=sys.stderr,
    )
    sys.exit(1)

declared = sorted({pkgs[m]["rust_version"] for m in meta["workspace_members"]})
highest = max(
    (p for p in pkgs.values() if p.get("rust_version")),
    key=lambda p: version(p["rust_version"]),
)
print(
    f"msrv: clean; the workspace declares rust {', '.join(declared)}; the most any of "
    f"the {len(pkgs)} locked packages needs is {highest['rust_version']} "
    f"({highest['name']} {highest['version']})"
)
EOF
