#!/usr/bin/env bash
# Prints the BoringSSL source directory of the boring-sys crate 5.4.0 on
# crates.io (see crate-src.sh). BoringSSL has no release number: this is the
# BoringSSL of boring-sys 5.4.0 (BORINGSSL_API_VERSION 44).
#   ebpf/tools/boringssl-src.sh  ->  ~/.cargo/registry/src/*/boring-sys-5.4.0/deps/boringssl
set -euo pipefail
src=$("$(dirname "$0")/crate-src.sh" boring-sys 5.4.0 deps/boringssl)
[ -f "$src/CMakeLists.txt" ] || { echo "boringssl-src.sh: $src has no CMakeLists.txt" >&2; exit 1; }
echo "$src"
