#!/usr/bin/env bash
# Prints the directory SUBDIR of crate CRATE at VERSION from crates.io, as
# cargo's registry keeps it (fetched with `cargo fetch` in a scratch project
# the first time).
#   ebpf/tools/crate-src.sh boring-sys 5.4.0 deps/boringssl
set -euo pipefail
[ $# = 3 ] || { echo "usage: crate-src.sh CRATE VERSION SUBDIR" >&2; exit 2; }
name=$1 version=$2 sub=$3
find_src() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$name-$version/$sub" 2>/dev/null | head -1; }
src=$(find_src || true)
if [ -z "$src" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/src"
  printf '[package]\nname = "fetch-crate-src"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s = "=%s"\n' \
    "$name" "$version" >"$scratch/Cargo.toml"
  echo 'fn main() {}' >"$scratch/src/main.rs"
  (cd "$scratch" && cargo fetch -q)
  src=$(find_src)
fi
[ -n "$src" ] || { echo "crate-src.sh: no $sub in $name $version" >&2; exit 1; }
echo "$src"
