#!/usr/bin/env bash
# Install what the integration-test servers need. Idempotent: only what is
# missing is installed, so a second run does (almost) nothing.
#   - Debian: ceph-mon ceph-osd radosgw ceph-common (Ceph 16.2 RGW), curl, openssl, jq,
#     skopeo (registry client), docker-registry (distribution 2.8, benchmark baseline),
#     haproxy (the balancer in front of registry replicas), apache2-utils (htpasswd)
#   - Python: boto3 (server set-up, botocore oracle, CloudFront edge verifier),
#     pyjwt + cryptography (OIDC tests, edge verifier), oras (registry client)
#   - garage 2.5.0 via cargo into $STOWAGE_TOOLS_DIR (default /opt/stowage-ci);
#     that build takes about 9 minutes on 2 cores, so the binary is reused;
#     cargo-audit the same way (about 7 minutes).
#   - azurite 3 (the Azure Blob emulator) via npm into $STOWAGE_TOOLS_DIR/azurite,
#     once (nodejs and npm from Debian when npm is missing).
#
# STOWAGE_INSTALL_SKIP="garage cargo-audit" leaves those builds out (the
# benchmark and the simulation start only RGW and audit nothing);
# "azurite" leaves Azurite out.
set -euo pipefail
SKIP=" ${STOWAGE_INSTALL_SKIP:-} "
TOOLS=${STOWAGE_TOOLS_DIR:-/opt/stowage-ci}
GARAGE_VERSION=2.5.0
PY=${PYTHON:-python3}
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
say() { echo "install: $*"; }

apt_install() {
  say "apt-get install $*"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# 1. Debian packages, only those whose command is missing.
pkgs=()
if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null ||
  ! command -v ceph-osd >/dev/null || ! command -v radosgw-admin >/dev/null; then
  pkgs+=(ceph-mon ceph-osd radosgw ceph-common)
fi
for tool in curl openssl jq skopeo docker-registry haproxy; do command -v "$tool" >/dev/null || pkgs+=("$tool"); done
command -v htpasswd >/dev/null || pkgs+=(apache2-utils)
if ((${#pkgs[@]})); then
  apt_install "${pkgs[@]}"
else
  say "ceph + radosgw $(radosgw --version | awk '{print $3}'), curl, openssl, jq, skopeo, docker-registry, haproxy, htpasswd: present"
fi

# 2. Python modules (import name:pip name), only those that do not import.
mods=()
for m in boto3:boto3 jwt:pyjwt cryptography:cryptography oras:oras; do
  "$PY" -c "import ${m%%:*}" 2>/dev/null || mods+=("${m#*:}")
done
if ((${#mods[@]})); then
  "$PY" -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  flags=()
  # Debian's own python refuses pip installs unless told otherwise (PEP 668).
  if "$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    flags+=(--break-system-packages)
  fi
  say "pip install ${mods[*]} (for $("$PY" -c 'import sys; print(sys.executable)'))"
  "$PY" -m pip install --quiet "${flags[@]}" "${mods[@]}"
else
  say "python modules boto3, jwt, cryptography, oras: present"
fi

# 3. Garage, built once.
if [[ "$SKIP" == *" garage "* ]]; then
  say "garage: skipped (STOWAGE_INSTALL_SKIP)"
elif [ -x "$TOOLS/bin/garage" ]; then
  say "garage: present ($("$TOOLS/bin/garage" --version 2>/dev/null | head -n1))"
else
  command -v cargo >/dev/null || { echo "install: cargo is needed to build garage" >&2; exit 1; }
  say "cargo install garage $GARAGE_VERSION into $TOOLS (about 9 minutes on 2 cores)"
  cargo install garage --locked --version "$GARAGE_VERSION" --root "$TOOLS"
fi
# 4. cargo-audit (the advisory audit in test-all.sh), built once.
if [[ "$SKIP" == *" cargo-audit "* ]]; then
  say "cargo-audit: skipped (STOWAGE_INSTALL_SKIP)"
elif [ -x "$TOOLS/bin/cargo-audit" ]; then
  say "cargo-audit: present ($("$TOOLS/bin/cargo-audit" audit --version 2>/dev/null | head -n1))"
else
  say "cargo install cargo-audit into $TOOLS (about 7 minutes on 2 cores)"
  cargo install cargo-audit --locked --root "$TOOLS"
fi
# 5. Azurite (the Azure Blob Storage emulator), from npm, once.
if [[ "$SKIP" == *" azurite "* ]]; then
  say "azurite: skipped (STOWAGE_INSTALL_SKIP)"
elif [ -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ]; then
  say "azurite: present ($(cd "$TOOLS/azurite" && node -p 'require("azurite/package.json").version' 2>/dev/null))"
else
  command -v npm >/dev/null || apt_install nodejs npm
  say "npm install azurite@3 into $TOOLS/azurite"
  npm install --prefix "$TOOLS/azurite" --no-audit --no-fund azurite@3
fi
say "done"
