#!/usr/bin/env bash
# The main job, with an embedded default: build gitvault, create a local vault (once), back up
# a real repository into it, and list the snapshots. Run it again for an incremental backup.
#
#   scripts/quickstart.sh [SOURCE...]      default SOURCE: this very clone of gitvault
#
# Settings (all optional):
#   GITVAULT_VAULT     the vault directory            [default: ./quickstart-vault]
#   GITVAULT_PASSWORD  the vault passphrase            [default: a demo passphrase, printed]
#   GITVAULT_CACHE_DIR mirrors of remote sources       [default: ~/.cache/gitvault]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

command -v git >/dev/null || { echo "quickstart: git is required (apt-get install git)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "quickstart: Rust's cargo is required (https://rustup.rs)" >&2; exit 1; }

cargo build --release --quiet -p gitvault
gitvault="$here/target/release/gitvault"

export GITVAULT_VAULT="${GITVAULT_VAULT:-$here/quickstart-vault}"
if [ -z "${GITVAULT_PASSWORD:-}" ]; then
  export GITVAULT_PASSWORD="gitvault quickstart demo passphrase"
  echo "quickstart: using the demo passphrase \"$GITVAULT_PASSWORD\" (set GITVAULT_PASSWORD for real backups)" >&2
fi

if [ ! -f "$GITVAULT_VAULT/config" ]; then
  "$gitvault" init
fi
if [ $# -eq 0 ]; then
  set -- "$here"
fi
"$gitvault" backup "$@"
echo
"$gitvault" snapshots
echo
echo "restore the latest snapshot with:"
echo "  $gitvault restore latest --target /tmp/restored.git   (with GITVAULT_VAULT and GITVAULT_PASSWORD as above)"
