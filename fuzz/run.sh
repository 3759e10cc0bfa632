#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for SECONDS on a scratch copy of its seeds.
# Usage: fuzz/run.sh SECONDS [TARGET...]   (needs nightly and cargo-fuzz)
# Exits non-zero if any target crashes; reproducers are left in fuzz/artifacts/<target>/.
set -euo pipefail

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build
work=$(mktemp -d "${TMPDIR:-/tmp}/rcapture-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    if [ -d "fuzz/seeds/$t" ]; then
        cp -R "fuzz/seeds/$t/." "$work/$t/"
    fi
    echo "== $t: ${secs}s"
    if ! cargo +nightly fuzz run "$t" "$work/$t" -- -max_total_time="$secs" -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash"
