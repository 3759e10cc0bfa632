#!/usr/bin/env bash
# Builds OpenSSL VERSION... as shared libraries into a cache outside the
# clone, once: $RCAPTURE_OPENSSL_CACHE/VERSION (default
# /var/cache/rcapture/openssl/VERSION) with lib/libssl.so.*, lib/libcrypto.so.*,
# the static lib/libssl.a and lib/libcrypto.a (built alongside; for the
# stripped static executables of the matrix test) and include/. A finished
# build is marked by its `.complete` file and is reused by later runs; an
# unfinished one, or one cached before the static libraries were kept, is
# rebuilt.
#   ebpf/tools/build-openssl.sh 1.1.1w 3.5.5
# Runs under `nice -n 19` with `make -j2` (RCAPTURE_OPENSSL_JOBS overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RCAPTURE_OPENSSL_CACHE:-/var/cache/rcapture/openssl}
jobs=${RCAPTURE_OPENSSL_JOBS:-2}
mkdir -p "$cache"

for v in "$@"; do
  out=$cache/$v
  if [ -f "$out/.complete" ] && [ -f "$out/lib/libssl.a" ]; then
    echo "build-openssl: $v: cached in $out"
    continue
  fi
  t0=$(date +%s)
  src=$("$here/openssl-src.sh" "$v")
  bld=$cache/build-$v
  rm -rf "$bld" "$out"
  cp -a "$src" "$bld"
  chmod -R u+w "$bld"
  opts=(linux-x86_64 shared no-tests)
  case "$v" in
    1.*) ;;
    *)
      # The trimmed crates of 3.5.5+ lack util/mkdef.pl (needed for `shared`)
      # and providers.num (hence no-legacy: the legacy provider module does
      # not change libssl's layout).
      opts+=(no-legacy)
      if [ ! -f "$bld/util/mkdef.pl" ]; then
        cp "$("$here/openssl-src.sh" 3.5.0)/util/mkdef.pl" "$bld/util/"
      fi
      ;;
  esac
  (
    cd "$bld"
    nice -n 19 ./Configure "${opts[@]}" >configure.log 2>&1 || { tail -20 configure.log; exit 1; }
    nice -n 19 make -j"$jobs" build_libs >make.log 2>&1 || { tail -40 make.log; exit 1; }
  )
  mkdir -p "$out/lib"
  cp -a "$bld"/libssl.so* "$bld"/libcrypto.so* "$bld"/libssl.a "$bld"/libcrypto.a "$out/lib/"
  cp -a "$bld/include" "$out/include"
  rm -rf "$bld"
  t1=$(date +%s)
  echo "$((t1 - t0))" >"$out/.build-seconds"
  touch "$out/.complete"
  echo "build-openssl: $v: built in $((t1 - t0)) s into $out"
done
