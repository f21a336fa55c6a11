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

git --version
restic version
borg --version
/usr/bin/time --version 2>&1 | head -1
