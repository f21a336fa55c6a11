#!/usr/bin/env bash
# Install the reference tools the benchmark harness compares gitvault against.
#
# Idempotent: packages already present are left alone, so this is cheap to run
# before every benchmark. Debian/Ubuntu only (uses apt-get); needs root or sudo.
#   restic      - reference deduplicating backup tool (always encrypted)
#   borgbackup  - reference deduplicating backup tool (repokey-blake2 encryption)
#   time        - GNU time, for /usr/bin/time -f %M (peak RSS of a child)
#   git         - the generator and the "git bundle" floor
#   python3     - runs genrepo.py and run.py (stdlib only)
#   rustic      - reference deduplicating backup tool (restic's format, in Rust); not packaged
#                 by Debian, so built with `cargo install rustic-rs --locked` (~12 min on 2 cores)
#                 into ${GITVAULT_BENCH_TOOLS:-~/.cache/gitvault-bench} and reused afterwards.
set -euo pipefail

pkgs=(restic borgbackup time git python3)
missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "bench/setup.sh: all of ${pkgs[*]} already installed"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "bench/setup.sh: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# rustic: the same places run.py looks, in the same order.
tools="${GITVAULT_BENCH_TOOLS:-$HOME/.cache/gitvault-bench}"
rustic_version="${RUSTIC_VERSION:-0.11.4}"  # the version the published numbers were taken with
rustic=""
for c in "$tools/bin/rustic" /work/.bench-tools/bin/rustic "$(command -v rustic || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then rustic="$c"; break; fi
done
if [ -n "$rustic" ]; then
    echo "bench/setup.sh: rustic already installed: $rustic"
else
    if ! command -v cargo >/dev/null; then
        echo "bench/setup.sh: rustic needs cargo (https://rustup.rs); run.py skips rustic without it" >&2
    else
        echo "bench/setup.sh: building rustic-rs $rustic_version into $tools (about 10-15 minutes, once)"
        cargo install rustic-rs --locked --version "$rustic_version" --root "$tools"
        rustic="$tools/bin/rustic"
    fi
fi

git --version
restic version
borg --version
if [ -n "$rustic" ]; then "$rustic" --version; fi
/usr/bin/time --version 2>&1 | head -1
