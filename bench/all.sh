#!/usr/bin/env bash
# Every benchmark of issue 6 in one command, then BENCHMARKS.md rewritten from the results.
#
#   bench/all.sh [--sizes small,medium,large] [--reps N] [--large-reps N] [--days N] [--no-forge]
#
# 1. bench/setup.sh: restic, borg, GNU time, git (apt) and rustic (cargo install, cached);
# 2. cargo build --release -p gitvault (the binary that is measured);
# 3. bench/run.py for each size: scenarios 1-3, 5, 6 (--reps repetitions, default 5) and
#    scenario 4, the thirty daily incrementals (one run; --days N shortens it, 0 skips it);
# 4. bench/forge.py: scenario 7, the 1,000-repository account, no change and 1% changed;
# 5. BENCHMARKS.md rebuilt from the newest result of every part (run.py --report-only), so the
#    storage, copy and metadata sections written by the other scripts are kept.
#
# Times on the 2-core reference machine: small ~2.5 min, medium ~5 min (measured), large
# ~1 h with 5 repetitions, ~35 min with --large-reps 1 (estimated: with less than ~26 GB free
# scenario 4 replays the 30 days once per tool), forge ~10 min; the first run also generates
# the repositories (medium ~1 min, large ~4 min, cached in bench/work/) and may build rustic
# (~12 min, cached). Run it on an idle machine: the report flags runs where others used the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=small,medium,large
reps=5
large_reps=""
days=30
forge=1
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) sizes=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --large-reps) large_reps=$2; shift 2 ;;
        --days) days=$2; shift 2 ;;
        --no-forge) forge=0; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bench/all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

step() { echo; echo "=== bench/all.sh: $* ($(date -u +%H:%M:%S) UTC, ${SECONDS}s so far)"; }

step "setup"
bench/setup.sh

step "cargo build --release -p gitvault"
cargo build --release -p gitvault
gitvault="${CARGO_TARGET_DIR:-target}/release/gitvault"

for size in ${sizes//,/ }; do
    r=$reps
    if [ "$size" = large ] && [ -n "$large_reps" ]; then r=$large_reps; fi
    step "run.py --sizes $size --reps $r --days $days"
    python3 bench/run.py --sizes "$size" --reps "$r" --days "$days" --gitvault "$gitvault" --no-build --no-report
done

if [ "$forge" = 1 ]; then
    step "forge.py --repos 1000"
    python3 bench/forge.py --repos 1000 --gitvault "$gitvault" --no-build --no-report
fi

step "report"
python3 bench/run.py --report-only
echo "bench/all.sh: done in ${SECONDS}s"
