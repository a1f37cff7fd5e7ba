#!/usr/bin/env bash
# Runs the end-to-end suite: the real `ampere` binary against a throwaway Postgres, driven by
# the published ElectricSQL clients. Build the server first (`cargo build --bin ampere`) or
# point AMPERE_BIN at a binary. Extra arguments are passed to `node --test`
# (e.g. `./run.sh --test-name-pattern=pglite`).
# nginx_cache.test.mjs also needs nginx (Debian package `nginx`, looked up as /usr/sbin/nginx,
# on PATH, or NGINX_BIN): it installs it with apt-get when run as root and missing, and skips
# with a message otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

repo_root="$(cd ../.. && pwd)"
bin="${AMPERE_BIN:-$repo_root/target/debug/ampere}"
if [[ ! -x "$bin" ]]; then
  echo "e2e: ampere binary not found at $bin" >&2
  echo "e2e: run \`cargo build --bin ampere\` in $repo_root first (or set AMPERE_BIN)" >&2
  exit 2
fi
for tool in node npm initdb pg_ctl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "e2e: \`$tool\` is not on PATH" >&2
    exit 2
  fi
done

# Install pinned packages only when node_modules is missing or the lockfile changed: the
# clients here, and the todo example (examples/todo) that todo_app.test.mjs builds and serves.
npm_ci_if_stale() {
  local dir=$1 stamp="$1/node_modules/.package-lock.sha256" want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -d $dir/node_modules || ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund)
    echo "$want" >"$stamp"
  fi
}
npm_ci_if_stale .
npm_ci_if_stale "$repo_root/examples/todo"

export AMPERE_BIN="$bin"
# Sequential: the machine has two cores and each file runs its own Postgres and server.
# --test-force-exit: @electric-sql/client keeps a 60 s throttled-save timer alive after the
# last up-to-date (its localStorage tracker, even in Node), which would hold each file open.
exec node --test --test-concurrency=1 --test-force-exit "$@" ./*.test.mjs
