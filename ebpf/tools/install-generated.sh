#!/usr/bin/env bash
# The last step of the offset generators: copies the generated file NEW to
# the committed OUT, or with --check fails (showing the diff) if OUT differs.
#   install-generated.sh NEW OUT GENERATOR [--check]
set -euo pipefail
new=$1 out=$2 gen=$3
if [ "${4:-}" = --check ]; then
  if ! cmp -s "$new" "$out"; then
    diff -u "$out" "$new" >&2 || true
    echo "$gen: $out is stale (run ebpf/tools/$gen.sh)" >&2
    exit 1
  fi
  echo "$gen: $out up to date"
else
  cp "$new" "$out"
  echo "$gen: wrote $out" >&2
fi
