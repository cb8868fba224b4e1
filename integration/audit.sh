#!/usr/bin/env bash
# The advisory audit of Cargo.lock, and a check that no crate whose
# advisory .cargo/audit.toml ignores is compiled into the default `stowage`
# binary (such crates may only come in through opt-in features).
#
# The database: ../shared/advisory-db (an offline snapshot) when that folder
# exists, else cargo-audit fetches the current one. cargo-audit comes from
# integration/servers/install.sh ($STOWAGE_TOOLS_DIR/bin) or the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${STOWAGE_TOOLS_DIR:-/opt/stowage-ci}
export PATH="$TOOLS/bin:$PATH"
command -v cargo-audit >/dev/null || { echo "audit: cargo-audit is missing (integration/servers/install.sh installs it)" >&2; exit 1; }

db_args=()
if [ -d ../shared/advisory-db/crates ]; then
  db_args=(--db ../shared/advisory-db --no-fetch --stale)
fi
# Vulnerabilities fail by default; unsound and unmaintained crates too.
cargo audit "${db_args[@]}" --deny unsound --deny unmaintained

# Crates whose advisories are ignored, by name, from .cargo/audit.toml's
# comments: each must stay out of the default binary's dependency graph.
ignored_crates=(rsa)
graph=$(cargo tree -p stowage-cli -e normal,build --prefix none --format '{p}' | awk '{print $1}' | sort -u)
for crate in "${ignored_crates[@]}"; do
  if grep -qx "$crate" <<<"$graph"; then
    echo "audit: $crate (advisory ignored for opt-in features only) is compiled into the default stowage binary" >&2
    exit 1
  fi
done
echo "audit: clean; ignored crates (${ignored_crates[*]}) are not in the default binary"
