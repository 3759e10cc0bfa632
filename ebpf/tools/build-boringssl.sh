#!/usr/bin/env bash
# Builds the BoringSSL of the boring-sys 5.4.0 crate (BORINGSSL_API_VERSION
# 44; source from crates.io, ebpf/tools/boringssl-src.sh) as shared
# libraries into a cache outside the clone, once: $RCAPTURE_BORINGSSL_CACHE
# (default /var/cache/rcapture/boringssl) with lib/libssl.so,
# lib/libcrypto.so (unversioned sonames, NEEDED libstdc++; RUNPATH to the
# cache, as bssl's), bin/bssl and include/. A finished build is marked by
# its `.complete` file and is reused by later runs; an unfinished one is
# rebuilt. The build directory is $cache.build, removed afterwards.
#   ebpf/tools/build-boringssl.sh
# Needs cmake, ninja-build and g++. Runs under `nice -n 19` with `ninja -j2`
# (RCAPTURE_BORINGSSL_JOBS overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${RCAPTURE_BORINGSSL_CACHE:-/var/cache/rcapture/boringssl}
jobs=${RCAPTURE_BORINGSSL_JOBS:-2}

if [ -f "$out/.complete" ]; then
  echo "build-boringssl: cached in $out"
  exit 0
fi
for tool in cmake ninja g++; do
  command -v "$tool" >/dev/null || { echo "build-boringssl: $tool is missing (apt-get install cmake ninja-build g++)" >&2; exit 1; }
done
t0=$(date +%s)
src=$("$here/boringssl-src.sh")
bld=$out.build
rm -rf "$bld" "$out"
mkdir -p "$bld"
(
  cd "$bld"
  nice -n 19 cmake -S "$src" -B . -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_RPATH="$out/lib" >cmake.log 2>&1 || { tail -20 cmake.log; exit 1; }
  nice -n 19 ninja -j"$jobs" ssl crypto bssl >ninja.log 2>&1 || { tail -40 ninja.log; exit 1; }
)
mkdir -p "$out/lib" "$out/bin"
cp -a "$bld/libssl.so" "$bld/libcrypto.so" "$out/lib/"
cp -a "$bld/bssl" "$out/bin/"
cp -a "$src/include" "$out/include"
rm -rf "$bld"
t1=$(date +%s)
echo "$((t1 - t0))" >"$out/.build-seconds"
touch "$out/.complete"
echo "build-boringssl: built in $((t1 - t0)) s into $out"
