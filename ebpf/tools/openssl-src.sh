#!/usr/bin/env bash
# Prints the source directory of OpenSSL VERSION (e.g. 3.5.5, 1.1.1w), from
# the openssl-src crate on crates.io (see crate-src.sh).
#   ebpf/tools/openssl-src.sh 3.5.5   ->  ~/.cargo/registry/src/*/openssl-src-300.5.5+3.5.5/openssl
set -euo pipefail

# OpenSSL release -> openssl-src crate version (the releases the crate ships).
crate_of() {
  case "$1" in
    1.1.1a) echo 111.1.1+1.1.1a ;;
    1.1.1b) echo 111.2.1+1.1.1b ;;
    1.1.1c) echo 111.5.0+1.1.1c ;;
    1.1.1d) echo 111.6.1+1.1.1d ;;
    1.1.1i) echo 111.13.0+1.1.1i ;;
    1.1.1j) echo 111.14.0+1.1.1j ;;
    1.1.1w) echo 111.28.2+1.1.1w ;;
    3.0.8) echo 300.0.13+3.0.8 ;;
    3.1.4) echo 300.1.6+3.1.4 ;;
    3.2.1) echo 300.2.3+3.2.1 ;;
    3.3.2) echo 300.3.2+3.3.2 ;;
    3.4.1) echo 300.4.2+3.4.1 ;;
    3.5.0) echo 300.5.0+3.5.0 ;;
    3.5.5) echo 300.5.5+3.5.5 ;;
    3.6.3) echo 300.6.1+3.6.3 ;;
    4.0.3) echo 400.0.2+4.0.3 ;;
    *) echo "openssl-src.sh: no openssl-src crate known for OpenSSL $1" >&2; return 1 ;;
  esac
}

crate=$(crate_of "$1")
src=$("$(dirname "$0")/crate-src.sh" openssl-src "$crate" openssl)
[ -f "$src/Configure" ] || { echo "openssl-src.sh: $src has no Configure" >&2; exit 1; }
echo "$src"
