#!/usr/bin/env bash
# Prints the BoringSSL source directory of the boring-sys crate 5.4.0 on
# crates.io (fetched with cargo into a scratch project the first time;
# cargo's registry keeps it). BoringSSL has no release number: this is the
# BoringSSL of boring-sys 5.4.0 (BORINGSSL_API_VERSION 44).
#   ebpf/tools/boringssl-src.sh  ->  ~/.cargo/registry/src/*/boring-sys-5.4.0/deps/boringssl
set -euo pipefail
crate=5.4.0
find_src() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"boring-sys-$crate"/deps/boringssl 2>/dev/null | head -1; }
src=$(find_src || true)
if [ -z "$src" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/src"
  printf '[package]\nname = "fetch-boringssl-src"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\nboring-sys = "=%s"\n' \
    "$crate" >"$scratch/Cargo.toml"
  echo 'fn main() {}' >"$scratch/src/main.rs"
  (cd "$scratch" && cargo fetch -q)
  src=$(find_src)
fi
[ -f "$src/CMakeLists.txt" ] || { echo "boringssl-src.sh: $src has no CMakeLists.txt" >&2; exit 1; }
echo "$src"
