#!/usr/bin/env bash
# Round trip through the independent reader: gitvault writes a vault, tools/gitvault_reader.py
# (written from FORMAT.md alone) reads it back, and the restored repositories must be exactly
# the sources: same refs, same HEAD, `git fsck --full` clean, ledger chain intact.
#
# Usage: bash tools/test_reader.sh        (from anywhere; exits non-zero on any mismatch)
# Needs: cargo, git, python3 (3.11+) with pip or venv. Python packages go into tools/.venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
checks=0
failed=0

say() { printf '\n== %s\n' "$*"; }
pass() { checks=$((checks + 1)); printf 'ok   %s\n' "$*"; }
fail() { checks=$((checks + 1)); failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- the gitvault binary -------------------------------------------------------------------
say "building gitvault"
gitvault="$(cd "$root" && cargo build -p gitvault --message-format=json-render-diagnostics \
  | python3 -c 'import json,sys
exe=None
for line in sys.stdin:
    m=json.loads(line)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="gitvault":
        exe=m["executable"]
print(exe or "")')"
[ -x "$gitvault" ] || die "cargo build did not produce the gitvault binary"
echo "$gitvault"

# --- Python and the reader's packages --------------------------------------------------------
say "setting up Python packages (tools/requirements.txt)"
venv="$here/.venv"
py=""
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import nacl, argon2, blake3, zstandard' 2>/dev/null; then
  py="$venv/bin/python"
elif [ -d "$venv/pydeps" ] && PYTHONPATH="$venv/pydeps" python3 -c 'import nacl, argon2, blake3, zstandard' 2>/dev/null; then
  export PYTHONPATH="$venv/pydeps${PYTHONPATH:+:$PYTHONPATH}"
  py="python3"
elif python3 -m venv "$venv" 2>/dev/null && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
  py="$venv/bin/python"
else
  # Debian without python3-venv (python3 -m venv fails there): install into a private
  # directory instead; pip's --target is not refused by PEP 668 "externally managed" systems.
  rm -rf "$venv"
  python3 -m pip install -q --target "$venv/pydeps" -r "$here/requirements.txt"
  export PYTHONPATH="$venv/pydeps${PYTHONPATH:+:$PYTHONPATH}"
  py="python3"
fi
"$py" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' || die "Python 3.11 or newer is needed"
reader() { "$py" "$here/gitvault_reader.py" "$@"; }
reader selftest && pass "reader agrees with the test vectors of FORMAT.md" || fail "selftest"

# --- a scratch area and a hermetic git -----------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/gitvault-reader-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL="$work/gitconfig"
export GIT_AUTHOR_NAME=Tester GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=Tester GIT_COMMITTER_EMAIL=t@example.com
git config --global init.defaultBranch main
git config --global advice.detachedHead false
export GITVAULT_CACHE_DIR="$work/cache"
export GITVAULT_PASSWORD='correct horse battery staple'
unset GITVAULT_VAULT GITVAULT_PASSWORD_FILE
gv() { "$gitvault" --quiet "$@"; }

# The ref state of a repository: every ref with its object, then what HEAD is.
state() {
  git -C "$1" for-each-ref --format='%(objectname) %(refname)'
  if git -C "$1" symbolic-ref -q HEAD >/dev/null; then
    echo "HEAD -> $(git -C "$1" symbolic-ref HEAD)"
  else
    echo "HEAD = $(git -C "$1" rev-parse -q --verify HEAD || echo none)"
  fi
}

# Compare a restored repository with an expected ref state and run fsck on it.
check_restored() { # NAME DIR EXPECTED_STATE_FILE
  local name="$1" dir="$2" expected="$3"
  if diff -u "$expected" <(state "$dir") >"$work/diff.txt"; then
    pass "$name: refs and HEAD equal the source's"
  else
    fail "$name: refs or HEAD differ"; cat "$work/diff.txt"
  fi
  if git -C "$dir" fsck --full --strict --no-dangling >"$work/fsck.txt" 2>&1; then
    pass "$name: git fsck --full is clean"
  else
    fail "$name: git fsck --full"; cat "$work/fsck.txt"
  fi
  if [ "$(git -C "$dir" rev-parse --is-bare-repository)" = true ]; then
    pass "$name: is a bare repository"
  else
    fail "$name: not a bare repository"
  fi
}

commit() { # REPO FILE TEXT
  printf '%s\n' "$3" >>"$1/$2"
  git -C "$1" add "$2"
  git -C "$1" commit -q -m "$2: $3"
}

# --- a source repository with branches, tags, notes, a merge and a binary file -------------
say "creating the source repository"
src="$work/src/acme/api"
mkdir -p "$src"
git init -q "$src"
commit "$src" README "hello"
commit "$src" README "second line"
head -c 3000000 /dev/urandom >"$src/blob.bin" # a pack of several 1 MiB chunks
git -C "$src" add blob.bin && git -C "$src" commit -q -m "binary"
git -C "$src" tag v1.0                                    # lightweight
git -C "$src" tag -a v1.1 -m "annotated tag"              # annotated
git -C "$src" checkout -q -b feature
commit "$src" feature.txt "feature work"
git -C "$src" checkout -q main
commit "$src" main.txt "main work"
git -C "$src" merge -q --no-edit feature
git -C "$src" notes add -m "a note on the merge" HEAD
git -C "$src" branch old-topic HEAD~1
git -C "$src" tag -a tree-tag -m "a tag of a tree" "HEAD^{tree}"
git -C "$src" update-ref refs/custom/thing HEAD~2
state "$src" >"$work/state-full.txt"

# --- vault 1: fast KDF, full then incremental ----------------------------------------------
say "vault with a fast KDF: full backup, new commits, incremental backup"
v1="$work/vault-fast"
gv init --vault "$v1" --kdf-memory-kib 1024 --kdf-iterations 1 >/dev/null
gv backup --vault "$v1" --type full --name acme/api "$src" >/dev/null
commit "$src" main.txt "after the full backup"
commit "$src" main.txt "and another"
git -C "$src" checkout -q feature
commit "$src" feature.txt "feature moves on"
git -C "$src" checkout -q main
git -C "$src" branch -D old-topic >/dev/null             # a deleted branch
git -C "$src" tag v2.0                                    # a new tag
git -C "$src" notes add -f -m "an amended note" HEAD~2
git -C "$src" symbolic-ref HEAD refs/heads/feature       # HEAD moves to another branch
state "$src" >"$work/state-incr.txt"
gv backup --vault "$v1" --name acme/api "$src" >/dev/null

reader --vault "$v1" snapshots >"$work/snapshots.txt" || fail "reader snapshots"
cat "$work/snapshots.txt"
n="$(wc -l <"$work/snapshots.txt")"
[ "$n" -eq 2 ] && pass "reader lists 2 snapshots" || fail "reader lists $n snapshots, 2 expected"
[ "$(grep -c ' acme/api$' "$work/snapshots.txt")" -eq 2 ] && pass "snapshots name the repository acme/api" \
  || fail "repository name missing from the listing"
full_id="$(sed -n 1p "$work/snapshots.txt" | cut -d' ' -f1)"
incr_id="$(sed -n 2p "$work/snapshots.txt" | cut -d' ' -f1)"
# The listing agrees with gitvault's own.
gv snapshots --vault "$v1" --json | "$py" -c '
import json, sys
ids = [s["id"] for s in json.load(sys.stdin)]
assert ids == sys.argv[1:], (ids, sys.argv[1:])' "$full_id" "$incr_id" \
  && pass "the reader lists the same snapshots as gitvault" || fail "listings differ"

reader --vault "$v1" show-snapshot "$incr_id" >"$work/incr.json"
"$py" - "$work/incr.json" "$full_id" <<'EOF' && pass "latest snapshot is an incremental on the full one, chain of a full and a thin pack" || fail "unexpected chain"
import json, sys
s = json.load(open(sys.argv[1]))
r = s["repositories"][0]
assert r["type"] == "incr" and r["base"] == sys.argv[2], (r["type"], r["base"])
assert len(r["chain"]) == 2 and r["chain"][0]["snapshot"] == sys.argv[2], r["chain"]
# Format version 5: the full pack has its index, the incremental's pack is thin (none).
assert "index" in r["chain"][0] and "index" not in r["chain"][1], r["chain"]
EOF

say "restoring with the independent reader"
reader --vault "$v1" restore "${incr_id:0:10}" --repo api --target "$work/restored-incr.git" \
  && pass "reader restored the incremental snapshot" || fail "reader restore (incremental)"
check_restored "incremental" "$work/restored-incr.git" "$work/state-incr.txt"
reader --vault "$v1" restore latest --repo acme/api --target "$work/restored-latest.git" >/dev/null \
  && pass "reader restored 'latest'" || fail "reader restore latest"
cmp -s <(state "$work/restored-latest.git") "$work/state-incr.txt" && pass "'latest' is the incremental" \
  || fail "'latest' is not the incremental"
reader --vault "$v1" restore "$full_id" --target "$work/restored-full.git" >/dev/null \
  && pass "reader restored the full snapshot" || fail "reader restore (full)"
check_restored "full" "$work/restored-full.git" "$work/state-full.txt"

# gitvault's own restore gives the same refs.
gv restore --vault "$v1" latest --target "$work/gitvault-restored.git" >/dev/null
cmp -s <(state "$work/gitvault-restored.git") <(state "$work/restored-incr.git") \
  && pass "gitvault's restore and the reader's agree" || fail "gitvault's restore differs from the reader's"

say "restoring by hand, with the commands of FORMAT.md section 10"
if command -v jq >/dev/null; then
  (
    set -euo pipefail
    V="$v1" R="$work/by-hand.git"
    cd "$work"
    reader() { "$py" "$here/gitvault_reader.py" --vault "$V" "$@"; }   # as in FORMAT.md
    reader show-snapshot latest >snap.json
    GIT_DEFAULT_REF_FORMAT=files git init -q --bare "$R"
    jq -r '.repositories[0].chain[] | "\(.checksum) \(.pack.id) \(.index.id // "thin")"' snap.json |
    while read -r sum pack idx; do
      if [ "$idx" = thin ]; then
        reader decrypt --kind pack "$pack" | git --git-dir="$R" index-pack --stdin --fix-thin >/dev/null
      else
        reader decrypt --kind pack  "$pack" >"$R/objects/pack/pack-$sum.pack"
        reader decrypt --kind index "$idx"  >"$R/objects/pack/pack-$sum.idx"
      fi
    done
    { printf '# pack-refs with: sorted \n'
      jq -r '.repositories[0].refs[] | "\(.oid) \(.name)"' snap.json; } >"$R/packed-refs"
    git --git-dir="$R" symbolic-ref HEAD "$(jq -r '.repositories[0].head.symbolic' snap.json)"
  ) && pass "the by-hand procedure ran" || fail "the by-hand procedure"
  check_restored "by hand" "$work/by-hand.git" "$work/state-incr.txt"
else
  echo "jq is not installed: skipping the by-hand procedure"
fi

say "ledger"
reader --vault "$v1" verify-ledger && pass "reader: ledger chain intact" || fail "reader verify-ledger"
gv verify --vault "$v1" --read-data >/dev/null && pass "gitvault verify --read-data accepts the vault" \
  || fail "gitvault verify"
reader --vault "$v1" verify-ledger >/dev/null && pass "reader: chain intact after verify appended to it" \
  || fail "reader verify-ledger after gitvault verify"
# Format version 4: a copy records an `audit` entry (with its `actor`) in the destination.
vc="$work/vault-copy"
gv init --vault "$vc" --kdf-memory-kib 1024 --kdf-iterations 1 >/dev/null
gv copy --from "$v1" --to "$vc" >/dev/null
entries="$("$gitvault" verify --vault "$vc" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["ledger_entries"])')"
[ "$entries" -eq 4 ] && pass "the copy's ledger has init, 2 snapshots and the copy's audit entry" \
  || fail "the copy's ledger has $entries entries, 4 expected"
reader --vault "$vc" verify-ledger >/dev/null && pass "reader: version 4 actor and audit entries understood" \
  || fail "reader verify-ledger on a ledger with an audit entry"

say "tampering is detected by the reader"
t="$work/tampered"
cp -a "$v1" "$t"
last_entry="$(ls "$t/ledger" | sort | tail -n 2 | head -n 1)"
"$py" - "$t/ledger/$last_entry" <<'EOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[40] ^= 1; open(p, "wb").write(b)
EOF
if reader --vault "$t" verify-ledger >/dev/null 2>&1; then fail "a flipped bit in a ledger entry went unnoticed"
else pass "a flipped bit in a ledger entry is reported"; fi
rm -rf "$t"; cp -a "$v1" "$t"
rm "$t/ledger/$(ls "$t/ledger" | sort | sed -n 2p)"
if reader --vault "$t" verify-ledger >/dev/null 2>&1; then fail "a removed ledger entry went unnoticed"
else pass "a removed ledger entry is reported"; fi
rm -rf "$t"; cp -a "$v1" "$t"
rm "$t/snapshots/$full_id"
if reader --vault "$t" verify-ledger >/dev/null 2>&1; then fail "a removed snapshot went unnoticed"
else pass "a removed snapshot is reported"; fi
rm -rf "$t"; cp -a "$v1" "$t"
pack_id="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["repositories"][0]["chain"][1]["pack"]["id"])' "$work/incr.json")"
"$py" - "$t/data/${pack_id:0:2}/$pack_id" <<'EOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-20] ^= 0x80; open(p, "wb").write(b)
EOF
if reader --vault "$t" restore latest --target "$work/from-tampered.git" >/dev/null 2>&1; then
  fail "a restore from an altered pack succeeded"
else pass "an altered pack makes the restore fail"; fi
[ ! -e "$work/from-tampered.git" ] && pass "a failed restore leaves no target behind" || fail "a failed restore left a target"
GITVAULT_PASSWORD=wrong reader --vault "$v1" snapshots >/dev/null 2>&1 && fail "a wrong passphrase opened the vault" \
  || pass "a wrong passphrase is refused"

# --- vault 2: default KDF parameters, two repositories (one SHA-256), detached HEAD --------
say "vault with the default KDF (128 MiB, 3 passes): two repositories"
other="$work/src/other"
git init -q --object-format=sha256 "$other"
commit "$other" a.txt "sha256 world"
commit "$other" a.txt "more"
git -C "$other" tag -a v0 -m "sha256 tag"
git -C "$other" checkout -q --detach HEAD~1
state "$other" >"$work/state-other.txt"
state "$src" >"$work/state-src2.txt"
empty="$work/src/empty"
git init -q --bare "$empty"
state "$empty" >"$work/state-empty.txt"
v2="$work/vault-default"
gv init --vault "$v2" >/dev/null
"$py" - "$v2" <<'EOF' && pass "key slot records the default Argon2id parameters" || fail "default KDF parameters"
import glob, json, sys
kdf = json.load(open(glob.glob(sys.argv[1] + "/keys/*")[0]))["kdf"]
assert (kdf["memory_kib"], kdf["iterations"], kdf["parallelism"]) == (131072, 3, 2), kdf
EOF
gv backup --vault "$v2" "$src" "$other" "$empty" >/dev/null
reader --vault "$v2" snapshots | tee "$work/snapshots2.txt" || fail "reader snapshots (default KDF)"
grep -q ' api,other,empty$' "$work/snapshots2.txt" && pass "a local path is named after its directory" \
  || fail "unexpected names of local sources"
reader --vault "$v2" restore latest --repo api --target "$work/v2-api.git" >/dev/null \
  && pass "restored acme/api from the default-KDF vault" || fail "restore acme/api (default KDF)"
check_restored "default KDF, acme/api" "$work/v2-api.git" "$work/state-src2.txt"
reader --vault "$v2" restore latest --repo other --target "$work/v2-other.git" >/dev/null \
  && pass "restored the SHA-256 repository" || fail "restore of the SHA-256 repository"
check_restored "default KDF, sha256 + detached HEAD" "$work/v2-other.git" "$work/state-other.txt"
reader --vault "$v2" restore latest --repo empty --target "$work/v2-empty.git" >/dev/null \
  && pass "restored the empty repository" || fail "restore of the empty repository"
check_restored "default KDF, empty repository" "$work/v2-empty.git" "$work/state-empty.txt"
reader --vault "$v2" verify-ledger && pass "reader: ledger chain intact (default KDF)" || fail "verify-ledger (default KDF)"

say "format version 2: forget, prune, deletion marks"
t="$work/retention"
rm -rf "$t"; cp -a "$v1" "$t"
# A new full backup: the older chain is then needed by no kept snapshot.
gv backup --vault "$t" --type full --name acme/api "$src" >/dev/null
gv forget --vault "$t" --keep-last 1 >/dev/null && pass "gitvault forget --keep-last 1" || fail "gitvault forget"
# Age the data files by two hours so that prune marks what no snapshot needs.
find "$t/data" -type f -exec touch -d '2 hours ago' {} +
gv prune --vault "$t" >/dev/null && pass "gitvault prune (marks)" || fail "gitvault prune"
[ -n "$(ls "$t/marks" 2>/dev/null)" ] && pass "a deletion mark was written" || fail "no deletion mark"
reader --vault "$t" verify-ledger >/dev/null && pass "reader: forget entry and deletion mark understood" \
  || fail "reader verify-ledger after forget + prune"
reader --vault "$t" restore latest --target "$work/after-forget.git" >/dev/null \
  && pass "reader: the kept snapshot restores after forget" || fail "reader restore after forget"

say "format version 3: Git LFS objects"
if command -v git-lfs >/dev/null; then
  lfs_src="$work/src/media"
  mkdir -p "$lfs_src"
  git init -q "$lfs_src"
  git -C "$lfs_src" lfs install --local >/dev/null
  git -C "$lfs_src" lfs track '*.bin' >/dev/null
  head -c 200000 /dev/urandom >"$lfs_src/a.bin"
  head -c 100000 /dev/urandom >"$lfs_src/b.bin"
  git -C "$lfs_src" add -A && git -C "$lfs_src" commit -q -m "LFS objects"
  v3="$work/vault-lfs"
  gv init --vault "$v3" --kdf-memory-kib 1024 --kdf-iterations 1 >/dev/null
  gv backup --vault "$v3" --name media "$lfs_src" >/dev/null && pass "gitvault backs up a repository with LFS objects" \
    || fail "gitvault backup of an LFS repository"
  if reader --vault "$v3" restore latest --target "$work/lfs-restored.git" >/dev/null; then
    ok=1
    for f in a.bin b.bin; do
      oid="$(sha256sum "$lfs_src/$f" | cut -d' ' -f1)"
      cmp -s "$lfs_src/$f" "$work/lfs-restored.git/lfs/objects/${oid:0:2}/${oid:2:2}/$oid" || ok=0
    done
    [ "$ok" = 1 ] && pass "reader: LFS objects restored into lfs/objects/ byte for byte" || fail "reader: LFS objects differ"
  else
    fail "reader restore of an LFS repository"
  fi
else
  echo "skipped: git-lfs is not installed"
fi

say "golden vaults (checked in, written by earlier versions)"
for ver in v1 v2 v3 v4 v5; do
  g="$root/crates/gitvault/tests/golden/$ver"
  GITVAULT_PASSWORD="golden vault $ver" reader --vault "$g/vault" verify-ledger >/dev/null \
    && pass "reader: golden $ver ledger" || fail "reader: golden $ver ledger"
  for f in "$g"/refs-*.txt; do
    id="$(basename "$f" .txt)"; id="${id#refs-}"
    out="$work/golden-$ver-$id.git"
    if GITVAULT_PASSWORD="golden vault $ver" reader --vault "$g/vault" restore "$id" --target "$out" >/dev/null \
      && [ "$(git -C "$out" for-each-ref --format='%(objectname) %(refname)')" = "$(cat "$f")" ]; then
      pass "reader: golden $ver snapshot ${id:0:8} restores exactly"
    else
      fail "reader: golden $ver snapshot ${id:0:8}"
    fi
  done
done

printf '\n%d passed, %d failed\n' "$((checks - failed))" "$failed"
[ "$failed" -eq 0 ]
