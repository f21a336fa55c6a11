#!/usr/bin/env python3
"""An independent reader of gitvault vaults, format versions 1 and 2.

Written from FORMAT.md alone (not from the Rust code) to show that the specification is enough
to get a repository back out of a vault. It only reads: it never writes into the vault.

    GITVAULT_PASSWORD=... python3 tools/gitvault_reader.py --vault DIR snapshots
    GITVAULT_PASSWORD=... python3 tools/gitvault_reader.py --vault DIR restore ID --repo NAME --target DIR
    GITVAULT_PASSWORD=... python3 tools/gitvault_reader.py --vault DIR verify-ledger
    GITVAULT_PASSWORD=... python3 tools/gitvault_reader.py --vault DIR show-snapshot ID
    GITVAULT_PASSWORD=... python3 tools/gitvault_reader.py --vault DIR decrypt DATA_ID > file
    python3 tools/gitvault_reader.py selftest

Requirements (tools/requirements.txt): PyNaCl, argon2-cffi, blake3, zstandard.
Exit codes: 0 success, 1 failure (damage, wrong passphrase, ...), 2 usage error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import argon2.exceptions
import blake3
import zstandard
from argon2.low_level import Type, hash_secret_raw
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
from nacl.exceptions import CryptoError

# --- FORMAT.md §1, §5, §6: constants -------------------------------------------------------

FORMAT_NAME = "gitvault"
FORMAT_VERSION = 5  # the newest vault version this reader knows; it reads 1 to 5
SNAPSHOT_VERSION = 1
MARK_VERSION = 1
MIN_GRACE_SECONDS = 3600
MAGIC = b"GITVAULT"
HEADER_LEN = 32
NONCE_PREFIX_LEN = 19
CHUNK = 1 << 20  # plaintext bytes per chunk
TAG = 16
SEALED_CHUNK = CHUNK + TAG
KIND_PACK, KIND_INDEX, KIND_SNAPSHOT, KIND_LEDGER, KIND_MARK, KIND_PENDING, KIND_LFS = 1, 2, 3, 4, 5, 6, 7
KIND_NAMES = {1: "pack", 2: "pack index", 3: "snapshot", 4: "ledger entry", 5: "deletion mark", 6: "pending pack",
              7: "LFS object"}
SLOT_AAD_PREFIX = b"gitvault key slot v1\x00"
DATA_KEY_CONTEXT = "gitvault v1 2026-11-28 envelope encryption key"
MAC_KEY_CONTEXT = "gitvault v1 2026-11-28 content mac key"
# Refuse key slots that would make us allocate absurd memory (FORMAT.md §4, "readers").
MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024

HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
LEDGER_NAME = re.compile(r"^[0-9]{20}$")


class VaultError(Exception):
    """Anything wrong with the vault or its key: exit code 1."""


class UsageError(Exception):
    """Anything wrong with the invocation: exit code 2."""


# --- small helpers ---------------------------------------------------------------------------


def b64(s: str, what: str) -> bytes:
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise VaultError(f"{what} is not base64: {e}") from None


def strict_object(value: object, what: str, required: set[str], optional: frozenset[str] = frozenset()) -> dict:
    """A JSON object with exactly the given fields (FORMAT.md §2: unknown fields are refused)."""
    if not isinstance(value, dict):
        raise VaultError(f"{what} is not a JSON object")
    keys = set(value)
    missing = required - keys
    unknown = keys - required - optional
    if missing:
        raise VaultError(f"{what} lacks field(s) {', '.join(sorted(missing))}")
    if unknown:
        raise VaultError(f"{what} has unknown field(s) {', '.join(sorted(unknown))}")
    return value


def want(value: object, typ: type | tuple, what: str):
    # bool is an int in Python; JSON integers must not be booleans and vice versa.
    if isinstance(value, bool) and typ is not bool:
        raise VaultError(f"{what} has the wrong type")
    if not isinstance(value, typ):
        raise VaultError(f"{what} has the wrong type")
    return value


def want_hex(value: object, pattern: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise VaultError(f"{what} is not lowercase hex of the right length: {value!r}")
    return value


def want_uint(value: object, what: str) -> int:
    v = want(value, int, what)
    if v < 0:
        raise VaultError(f"{what} is negative")
    return v


def parse_time(s: object, what: str) -> dt.datetime:
    if not isinstance(s, str):
        raise VaultError(f"{what} is not a string")
    try:
        t = dt.datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        raise VaultError(f"{what} is not an RFC 3339 time: {s!r}") from None
    if t.tzinfo is None:
        raise VaultError(f"{what} has no UTC offset: {s!r}")
    return t


def json_bytes(b: bytes, what: str) -> object:
    try:
        return json.loads(b.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VaultError(f"{what} is not valid JSON: {e}") from None


def mac(key: bytes, data: bytes) -> str:
    return blake3.blake3(data, key=key).hexdigest()


# --- keys (FORMAT.md §3, §4, §5) --------------------------------------------------------------


@dataclass
class Keys:
    data: bytes
    mac: bytes


def derive_keys(master: bytes) -> Keys:
    return Keys(
        data=blake3.blake3(master, derive_key_context=DATA_KEY_CONTEXT).digest(),
        mac=blake3.blake3(master, derive_key_context=MAC_KEY_CONTEXT).digest(),
    )


def read_config(vault: str) -> dict:
    path = os.path.join(vault, "config")
    try:
        raw = open(path, "rb").read()
    except FileNotFoundError:
        raise VaultError(f"{vault} is not a gitvault vault (no config file)") from None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VaultError(f"{vault} is not a gitvault vault (config is not JSON)") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT_NAME:
        raise VaultError(f"{vault} is not a gitvault vault")
    version = value.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise VaultError(f"vault format version {version} is newer than this reader supports ({FORMAT_VERSION})")
    strict_object(value, "config", {"format", "version", "id"})
    if version not in (1, 2, 3, 4, 5):
        raise VaultError(f"vault format version {version!r} is not supported")
    want_hex(value["id"], HEX32, "config id")
    return value


def open_slot(slot: dict, vault_id: bytes, passphrase: bytes) -> bytes | None:
    """The master key if `passphrase` opens this slot, else None."""
    if want(slot["version"], int, "key slot version") != 1:
        raise VaultError(f"key slot version {slot['version']} is not supported")
    kdf = strict_object(slot["kdf"], "key slot kdf", {"algorithm", "memory_kib", "iterations", "parallelism", "salt"})
    if kdf["algorithm"] != "argon2id" or slot["cipher"] != "xchacha20poly1305":
        raise VaultError("key slot uses an unknown KDF or cipher")
    memory = want_uint(kdf["memory_kib"], "memory_kib")
    iterations = want_uint(kdf["iterations"], "iterations")
    lanes = want_uint(kdf["parallelism"], "parallelism")
    if memory > MAX_KDF_MEMORY_KIB:
        raise VaultError(f"key slot asks for {memory} KiB of memory; refusing")
    salt = b64(kdf["salt"], "salt")
    nonce = b64(slot["nonce"], "nonce")
    wrapped = b64(slot["wrapped_key"], "wrapped_key")
    if len(nonce) != 24:
        raise VaultError("key slot nonce is not 24 bytes")
    try:
        kek = hash_secret_raw(passphrase, salt, iterations, memory, lanes, 32, Type.ID, 0x13)
    except argon2.exceptions.HashingError as e:
        raise VaultError(f"key slot {slot['id']}: invalid Argon2id parameters: {e}") from None
    aad = SLOT_AAD_PREFIX + vault_id + bytes.fromhex(slot["id"])
    try:
        master = crypto_aead_xchacha20poly1305_ietf_decrypt(wrapped, aad, nonce, kek)
    except CryptoError:
        return None
    if len(master) != 32:
        raise VaultError("wrapped master key is not 32 bytes")
    return master


def unlock(vault: str, config: dict, passphrase: bytes) -> Keys:
    vault_id = bytes.fromhex(config["id"])
    keys_dir = os.path.join(vault, "keys")
    names = sorted(os.listdir(keys_dir)) if os.path.isdir(keys_dir) else []
    tried = 0
    for name in names:
        if not HEX32.match(name):
            continue
        slot = json_bytes(open(os.path.join(keys_dir, name), "rb").read(), f"keys/{name}")
        strict_object(slot, f"keys/{name}", {"version", "id", "kdf", "cipher", "nonce", "wrapped_key"})
        if slot["id"] != name:
            raise VaultError(f"keys/{name} holds the slot {slot['id']!r} (renamed?)")
        tried += 1
        master = open_slot(slot, vault_id, passphrase)
        if master is not None:
            return derive_keys(master)
    if tried == 0:
        raise VaultError("the vault has no key slots")
    raise VaultError("wrong passphrase: no key slot of this vault opens with it")


# --- envelopes (FORMAT.md §6) ----------------------------------------------------------------


def read_full(f: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def open_envelope(path: str, kind: int, ident: str, keys: Keys) -> Iterator[bytes]:
    """Yield the authenticated, decompressed content of an envelope, piece by piece.

    Every chunk is authenticated before any of its bytes are yielded; a truncated or extended
    file, a wrong kind or id, or any altered byte raises VaultError. Memory stays bounded.
    """
    with open(path, "rb") as f:
        header = read_full(f, HEADER_LEN)
        if len(header) < HEADER_LEN:
            raise VaultError(f"{path}: truncated (no complete header)")
        if header[:8] != MAGIC:
            raise VaultError(f"{path}: not a gitvault file (bad magic)")
        if header[8] != 1:
            raise VaultError(f"{path}: envelope version {header[8]} is not supported (newer gitvault?)")
        if header[9] != kind:
            found = KIND_NAMES.get(header[9], f"unknown ({header[9]})")
            raise VaultError(f"{path}: holds a {found} where a {KIND_NAMES[kind]} was expected")
        compression = header[10]
        if compression not in (0, 1):
            raise VaultError(f"{path}: unknown compression {compression}")
        prefix = header[13:32]
        aad = header + ident.encode("ascii")
        dec = zstandard.ZstdDecompressor() if compression == 1 else None
        dobj = dec.decompressobj() if dec else None
        counter = 0
        while True:
            sealed = read_full(f, SEALED_CHUNK)
            last = len(sealed) < SEALED_CHUNK
            if last and len(sealed) < TAG:
                raise VaultError(f"{path}: truncated")
            if counter >= 1 << 32:
                raise VaultError(f"{path}: too many chunks")
            nonce = prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
            try:
                plain = crypto_aead_xchacha20poly1305_ietf_decrypt(sealed, aad, nonce, keys.data)
            except CryptoError:
                raise VaultError(
                    f"{path}: authentication failed (altered, truncated, moved, or another key)"
                ) from None
            counter += 1
            if dobj is None:
                if plain:
                    yield plain
            else:
                try:
                    while plain:
                        out = dobj.decompress(plain)
                        if out:
                            yield out
                        plain = b""
                        if dobj.eof and dobj.unused_data:
                            # Another frame follows: decode it with a fresh decompressor.
                            plain = dobj.unused_data
                            dobj = dec.decompressobj()
                except zstandard.ZstdError as e:
                    raise VaultError(f"{path}: decompression failed: {e}") from None
            if last:
                break
        if dobj is not None and not dobj.eof:
            raise VaultError(f"{path}: decompression failed: the zstd frame is incomplete")


def read_envelope(path: str, kind: int, ident: str, keys: Keys) -> bytes:
    return b"".join(open_envelope(path, kind, ident, keys))


# --- snapshots (FORMAT.md §7) ----------------------------------------------------------------

SNAPSHOT_FIELDS = {"version", "id", "time", "host", "gitvault_version", "repositories"}
REPO_FIELDS = {"name", "source", "type", "base", "object_format", "head", "refs", "chain"}
PACK_FIELDS = {"snapshot", "checksum", "objects", "pack"}  # and "index", absent for a thin pack (v5)
DATAREF_FIELDS = {"id", "mac", "size", "plain_size"}


def check_snapshot(s: object, file_id: str) -> dict:
    """Validate a snapshot document against FORMAT.md §7; returns it."""
    s = strict_object(s, "snapshot", SNAPSHOT_FIELDS, frozenset({"failures"}))
    version = want(s["version"], int, "snapshot version")
    if version > SNAPSHOT_VERSION:
        raise VaultError(f"snapshot version {version} is newer than this reader supports")
    if version != SNAPSHOT_VERSION:
        raise VaultError(f"snapshot version {version} is not supported")
    if want_hex(s["id"], HEX64, "snapshot id") != file_id:
        raise VaultError(f"snapshot {file_id} holds the id {s['id']} (renamed?)")
    s["_time"] = parse_time(s["time"], "snapshot time")
    want(s["host"], str, "host")
    want(s["gitvault_version"], str, "gitvault_version")
    names = set()
    for r in want(s["repositories"], list, "repositories"):
        # Format version 3 adds `lfs` (FORMAT.md §7.6); older snapshots have no such field.
        strict_object(r, "repository", REPO_FIELDS | ({"lfs"} if "lfs" in r else set()))
        name = want(r["name"], str, "repository name")
        if name in names:
            raise VaultError(f"repository {name} appears twice")
        names.add(name)
        want(r["source"], str, "source")
        if r["type"] not in ("full", "diff", "incr"):
            raise VaultError(f"repository {name}: unknown type {r['type']!r}")
        if r["base"] is not None:
            want_hex(r["base"], HEX64, "base")
        if r["type"] == "full" and r["base"] is not None:
            raise VaultError(f"repository {name}: a full backup with a base")
        if r["object_format"] not in ("sha1", "sha256"):
            raise VaultError(f"repository {name}: unknown object format {r['object_format']!r}")
        oid = re.compile(r"^[0-9a-f]{40}$" if r["object_format"] == "sha1" else r"^[0-9a-f]{64}$")
        head = r["head"]
        if head is not None:
            if not isinstance(head, dict) or len(head) != 1 or not (set(head) <= {"symbolic", "detached"}):
                raise VaultError(f"repository {name}: malformed head {head!r}")
            if "symbolic" in head:
                want(head["symbolic"], str, "head")
            else:
                want_hex(head["detached"], oid, "detached head")
        previous = None
        for ref in want(r["refs"], list, "refs"):
            strict_object(ref, "ref", {"name", "oid"})
            rn = want(ref["name"], str, "ref name")
            if not rn.startswith("refs/") or "\n" in rn or " " in rn:
                raise VaultError(f"repository {name}: bad ref name {rn!r}")
            want_hex(ref["oid"], oid, f"oid of {rn}")
            if previous is not None and not previous < rn.encode():
                raise VaultError(f"repository {name}: refs not sorted bytewise / duplicated at {rn}")
            previous = rn.encode()
        for i, p in enumerate(want(r["chain"], list, "chain")):
            strict_object(p, "pack record", PACK_FIELDS, frozenset({"index"}))
            want_hex(p["snapshot"], HEX64, "pack snapshot")
            want_hex(p["checksum"], oid, "pack checksum")
            want_uint(p["objects"], "objects")
            if i == 0 and "index" not in p:
                raise VaultError(f"repository {name}: the first pack of the chain is thin")
            for part in ("pack", "index"):
                if part not in p:
                    continue
                d = strict_object(p[part], f"{part} data ref", DATAREF_FIELDS)
                want_hex(d["id"], HEX64, "data id")
                want_hex(d["mac"], HEX64, "data mac")
                want_uint(d["size"], "size")
                want_uint(d["plain_size"], "plain_size")
        previous = None
        for lfs in want(r.get("lfs", []), list, "lfs"):
            strict_object(lfs, "LFS record", {"oid", "size", "data"})
            want_hex(lfs["oid"], HEX64, "LFS oid")
            want_uint(lfs["size"], "LFS size")
            d = strict_object(lfs["data"], "LFS data ref", DATAREF_FIELDS)
            want_hex(d["id"], HEX64, "data id")
            want_hex(d["mac"], HEX64, "data mac")
            want_uint(d["size"], "size")
            if want_uint(d["plain_size"], "plain_size") != lfs["size"]:
                raise VaultError(f"repository {name}: LFS object {lfs['oid']} has two sizes")
            if previous is not None and not previous < lfs["oid"]:
                raise VaultError(f"repository {name}: LFS objects not sorted / duplicated at {lfs['oid']}")
            previous = lfs["oid"]
    for fl in want(s.get("failures", []), list, "failures"):
        strict_object(fl, "failure", {"name", "source", "error"})
    return s


def snapshot_ids(vault: str) -> list[str]:
    d = os.path.join(vault, "snapshots")
    if not os.path.isdir(d):
        return []
    return sorted(n for n in os.listdir(d) if HEX64.match(n))


def read_snapshot(vault: str, sid: str, keys: Keys) -> tuple[dict, bytes]:
    plain = read_envelope(os.path.join(vault, "snapshots", sid), KIND_SNAPSHOT, sid, keys)
    return check_snapshot(json_bytes(plain, f"snapshots/{sid}"), sid), plain


def all_snapshots(vault: str, keys: Keys) -> list[dict]:
    """Every readable snapshot, oldest first. A damaged one is reported and skipped, so that
    it cannot keep the others from being listed and restored."""
    snaps = []
    for sid in snapshot_ids(vault):
        try:
            snaps.append(read_snapshot(vault, sid, keys)[0])
        except VaultError as e:
            print(f"warning: skipping snapshots/{sid}: {e}", file=sys.stderr)
    snaps.sort(key=lambda s: (s["_time"], s["id"]))
    return snaps


def resolve(snaps: list[dict], query: str) -> dict:
    if query == "latest":
        if not snaps:
            raise VaultError("the vault holds no snapshot")
        return snaps[-1]
    q = query.lower()
    found = [s for s in snaps if q and s["id"].startswith(q)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise VaultError(f"no snapshot matches {query!r}")
    raise VaultError(f"{query!r} is ambiguous: {', '.join(s['id'][:8] for s in found)}")


def select_repo(snap: dict, query: str | None) -> dict:
    repos = snap["repositories"]
    if query is None:
        if len(repos) == 1:
            return repos[0]
        raise UsageError("the snapshot holds several repositories; pick one with --repo: "
                         + ", ".join(r["name"] for r in repos))
    exact = [r for r in repos if r["name"] == query]
    if exact:
        return exact[0]
    found = [r for r in repos
             if r["name"].endswith(query) and r["name"][: -len(query)].endswith(("/", ":"))]
    if len(found) == 1:
        return found[0]
    if not found:
        raise VaultError(f"no repository {query!r} in snapshot {snap['id'][:8]}; it holds: "
                         + ", ".join(r["name"] for r in repos))
    raise VaultError(f"{query!r} is ambiguous: {', '.join(r['name'] for r in found)}")


# --- restore by hand (FORMAT.md §10) ---------------------------------------------------------


def data_path(vault: str, data_id: str) -> str:
    return os.path.join(vault, "data", data_id[:2], data_id)


def decrypt_data_to(vault: str, ref: dict, kind: int, keys: Keys, out_path: str) -> None:
    """Decrypt one data object into out_path, checking its stored size, plaintext size and MAC."""
    src = data_path(vault, ref["id"])
    try:
        stored = os.path.getsize(src)
    except FileNotFoundError:
        raise VaultError(f"data/{ref['id'][:2]}/{ref['id']} is missing") from None
    if stored != ref["size"]:
        raise VaultError(f"{src} is {stored} bytes, the snapshot says {ref['size']}")
    h = blake3.blake3(key=keys.mac)
    n = 0
    with open(out_path, "wb") as out:
        for piece in open_envelope(src, kind, ref["id"], keys):
            h.update(piece)
            n += len(piece)
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())
    if n != ref["plain_size"] or h.hexdigest() != ref["mac"]:
        raise VaultError(f"{src}: content differs from the one the snapshot recorded (size or MAC)")


def check_thin_pack(pack: str, checksum: str) -> None:
    """A thin pack's trailing hash must equal the recorded checksum."""
    hlen = len(checksum) // 2
    with open(pack, "rb") as f:
        head = f.read(4)
        f.seek(-hlen, os.SEEK_END)
        trailer = f.read(hlen).hex()
    if head != b"PACK" or trailer != checksum:
        raise VaultError(f"pack {checksum}: decrypted file is not the git pack recorded")


def check_pack_files(pack: str, idx: str, checksum: str) -> None:
    """The pack's trailing hash and the copy of it in the index must equal the recorded checksum."""
    hlen = len(checksum) // 2
    with open(pack, "rb") as f:
        head = f.read(4)
        f.seek(-hlen, os.SEEK_END)
        trailer = f.read(hlen).hex()
    with open(idx, "rb") as f:
        magic = f.read(8)
        f.seek(-2 * hlen, os.SEEK_END)
        idx_pack_hash = f.read(hlen).hex()
    if head != b"PACK" or magic != b"\xfftOc\x00\x00\x00\x02":
        raise VaultError(f"pack {checksum}: decrypted files are not a git pack and a v2 index")
    if trailer != checksum or idx_pack_hash != checksum:
        raise VaultError(f"pack {checksum}: its trailer or index names another pack")


def git(*args: str, cwd: str | None = None) -> str:
    env = dict(os.environ)
    # The refs are written as packed-refs, so the repository must use the "files" backend.
    env["GIT_DEFAULT_REF_FORMAT"] = "files"
    p = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise VaultError(f"git {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def restore(vault: str, keys: Keys, snap: dict, repo: dict, target: str) -> None:
    """Rebuild `repo` of `snap` as a bare repository at `target` (new or empty)."""
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise UsageError(f"{target} exists and is not an empty directory")
    # Build beside the target and move it into place at the end, so that a failure leaves
    # nothing that looks like a restored repository.
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    work = os.path.join(parent, f".{os.path.basename(target)}.reader-partial-{os.getpid()}")
    try:
        build(vault, keys, repo, work)
        if os.path.isdir(target):
            os.rmdir(target)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def build(vault: str, keys: Keys, repo: dict, work: str) -> None:
    # 1. An empty bare repository of the right object format, with the "files" ref backend.
    init = ["init", "--quiet", "--bare"]
    if repo["object_format"] == "sha256":
        init.append("--object-format=sha256")
    git(*init, work)
    if os.path.exists(os.path.join(work, "reftable")):
        raise VaultError("git created a reftable repository; packed-refs need the files backend")
    # 2. Every pack of the chain in order: a self-contained one decrypted next to its index
    #    under the recorded checksum; a thin one (version 5, no index) completed with the bases
    #    the packs before it hold, and indexed, by `git index-pack --stdin --fix-thin`.
    pack_dir = os.path.join(work, "objects", "pack")
    os.makedirs(pack_dir, exist_ok=True)
    for p in repo["chain"]:
        base = os.path.join(pack_dir, f"pack-{p['checksum']}")
        if "index" not in p:
            part = os.path.join(work, f"thin-{p['checksum']}.pack.part")
            decrypt_data_to(vault, p["pack"], KIND_PACK, keys, part)
            check_thin_pack(part, p["checksum"])
            with open(part, "rb") as f:
                done = subprocess.run(["git", "index-pack", "--stdin", "--fix-thin"], cwd=work, stdin=f,
                                      capture_output=True, text=True)
            os.remove(part)
            if done.returncode != 0:
                raise VaultError(f"pack {p['checksum']}: git index-pack --fix-thin failed: {done.stderr.strip()}")
            continue
        if os.path.exists(base + ".pack"):
            continue
        decrypt_data_to(vault, p["pack"], KIND_PACK, keys, base + ".pack.part")
        decrypt_data_to(vault, p["index"], KIND_INDEX, keys, base + ".idx.part")
        check_pack_files(base + ".pack.part", base + ".idx.part", p["checksum"])
        os.rename(base + ".pack.part", base + ".pack")
        os.rename(base + ".idx.part", base + ".idx")
    # 3. Format version 3: every LFS object, where git-lfs looks in a bare repository
    #    (lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>), checked against its SHA-256.
    for lfs in repo.get("lfs", []):
        oid = lfs["oid"]
        obj_dir = os.path.join(work, "lfs", "objects", oid[:2], oid[2:4])
        os.makedirs(obj_dir, exist_ok=True)
        part = os.path.join(obj_dir, oid + ".part")
        decrypt_data_to(vault, lfs["data"], KIND_LFS, keys, part)
        h = hashlib.sha256()
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != oid:
            raise VaultError(f"LFS object {oid}: its content hashes to {h.hexdigest()}")
        os.rename(part, os.path.join(obj_dir, oid))
    # 4. packed-refs: the header line, then "<oid> SP <name> LF" in the recorded (bytewise) order.
    #    A fresh repository has no loose refs that could shadow them.
    lines = ["# pack-refs with: sorted \n"] + [f"{r['oid']} {r['name']}\n" for r in repo["refs"]]
    with open(os.path.join(work, "packed-refs"), "wb") as f:
        f.write("".join(lines).encode("utf-8"))
    # 5. HEAD: symbolic, detached, or left as git init made it when the snapshot records none.
    head = repo["head"]
    if head is not None:
        content = f"ref: {head['symbolic']}\n" if "symbolic" in head else f"{head['detached']}\n"
        with open(os.path.join(work, "HEAD"), "wb") as f:
            f.write(content.encode("utf-8"))


# --- ledger (FORMAT.md §8) -------------------------------------------------------------------

EVENT_FIELDS = {
    "init": ({"vault", "key_slot"}, frozenset()),
    "snapshot": ({"snapshot", "mac", "repositories"}, frozenset({"recovered"})),
    "key_add": ({"key_slot"}, frozenset()),
    "key_remove": ({"key_slot"}, frozenset()),
    "restore": ({"snapshot", "repositories"}, frozenset()),
    "verify": ({"read_data", "problems"}, frozenset({"data_subset"})),
    # format version 2
    "forget": ({"snapshots", "reason"}, frozenset({"replaced_by"})),
    "prune": ({"mark", "data", "bytes"}, frozenset()),
    "upgrade": ({"from", "to"}, frozenset()),
    # format version 4
    "audit": ({"action", "target", "outcome"}, frozenset({"detail"})),
}
V2_EVENTS = {"forget", "prune", "upgrade"}
V4_EVENTS = {"audit"}


def verify_ledger(vault: str, config: dict, keys: Keys) -> tuple[list[str], list[str], int]:
    """Check the hash chain and what it records. Returns (problems, warnings, entry count)."""
    problems: list[str] = []
    warnings: list[str] = []
    d = os.path.join(vault, "ledger")
    names = sorted(n for n in os.listdir(d) if LEDGER_NAME.match(n)) if os.path.isdir(d) else []
    if not names:
        return ["ledger/: empty; every vault has at least its init entry"], warnings, 0
    expected = 1
    prev_hash: str | None = None
    recorded: dict[str, str] = {}
    forgotten: dict[str, int] = {}
    slots: set[str] = set()
    for name in names:
        seq = int(name)
        path = f"ledger/{name}"
        if seq == 0:
            problems.append(f"{path}: entries are numbered from 1")
            continue
        if seq != expected:
            problems.append(f"ledger/{expected:020d}: entries {expected}..{seq - 1} are missing")
            prev_hash = None
        expected = seq + 1
        try:
            plain = read_envelope(os.path.join(d, name), KIND_LEDGER, str(seq), keys)
            # `actor` is format version 4's (FORMAT.md §8), optional.
            e = strict_object(json_bytes(plain, path), path, {"seq", "prev", "time", "host", "event"}, frozenset({"actor"}))
            if want(e["seq"], int, "seq") != seq:
                raise VaultError(f"holds number {e['seq']}")
            parse_time(e["time"], "time")
            want(e["host"], str, "host")
            if "actor" in e:
                want(e["actor"], str, "actor")
            ev = e["event"]
            kind = ev.get("kind") if isinstance(ev, dict) else None
            if kind not in EVENT_FIELDS:
                raise VaultError(f"unknown event kind {kind!r}")
            req, opt = EVENT_FIELDS[kind]
            strict_object(ev, f"{path} event", req | {"kind"}, opt)
            if e["prev"] is not None:
                want_hex(e["prev"], HEX64, "prev")
        except VaultError as err:
            problems.append(f"{path}: unreadable: {err}")
            prev_hash = None
            continue
        this_hash = mac(keys.mac, plain)
        if seq == 1:
            if e["prev"] is not None:
                problems.append(f"{path}: the first entry must have prev null")
            if kind != "init" or ev["vault"] != config["id"]:
                problems.append(f"{path}: the first entry is not this vault's init entry")
        elif kind == "init":
            problems.append(f"{path}: an init entry after the first")
        if seq > 1 and prev_hash is not None and e["prev"] != prev_hash:
            problems.append(f"{path}: does not follow entry {seq - 1}: the chain is broken")
        prev_hash = this_hash
        v2 = kind in V2_EVENTS or (kind == "verify" and "data_subset" in ev)
        if v2 and config["version"] < 2:
            if kind == "upgrade":
                warnings.append(f"{path}: an upgrade the vault's config does not show yet (interrupted upgrade)")
            else:
                problems.append(f"{path}: a version 2 {kind} entry in a version 1 vault")
        if kind in V4_EVENTS and config["version"] < 4:
            problems.append(f"{path}: a version 4 {kind} entry in a version {config['version']} vault")
        if "actor" in e and config["version"] < 4 and kind != "upgrade":
            problems.append(f"{path}: an actor field (version 4) in a version {config['version']} vault")
        if kind == "forget":
            for sid in ev["snapshots"]:
                forgotten.setdefault(want_hex(sid, HEX64, "forgotten snapshot"), seq)
        elif kind == "snapshot":
            recorded.setdefault(ev["snapshot"], ev["mac"])
        elif kind in ("init", "key_add"):
            slots.add(ev["key_slot"])
        elif kind == "key_remove":
            slots.discard(ev["key_slot"])
    # Every snapshot the ledger records exists and is the same; every snapshot is recorded.
    present = set(snapshot_ids(vault))
    for sid, want_mac in sorted(recorded.items()):
        if sid not in present:
            if sid not in forgotten:
                problems.append(f"snapshots/{sid}: recorded in the ledger but missing")
            continue
        if sid in forgotten:
            warnings.append(f"snapshots/{sid}: forgotten in entry {forgotten[sid]} but still present (interrupted forget)")
        try:
            _, plain = read_snapshot(vault, sid, keys)
        except VaultError as err:
            problems.append(f"snapshots/{sid}: {err}")
            continue
        if mac(keys.mac, plain) != want_mac:
            problems.append(f"snapshots/{sid}: differs from the snapshot recorded in the ledger")
    for sid in sorted(present - set(recorded)):
        warnings.append(f"snapshots/{sid}: not recorded in the ledger (interrupted or running backup)")
    kd = os.path.join(vault, "keys")
    present_slots = {n for n in os.listdir(kd) if HEX32.match(n)} if os.path.isdir(kd) else set()
    for s in sorted(present_slots - slots):
        problems.append(f"keys/{s}: a key slot that no ledger entry added")
    for s in sorted(slots - present_slots):
        problems.append(f"keys/{s}: recorded in the ledger but missing")
    problems.extend(check_marks(vault, keys))
    warnings.extend(check_pending(vault, keys))
    return problems, warnings, len(names)


MARK_NAME = re.compile(r"^[0-9a-f]{32}$")
PENDING_FIELDS = {"version", "id", "time", "host", "name", "object_format", "base", "tips", "packs"}


def check_pending(vault: str, keys: Keys) -> list[str]:
    """FORMAT.md §9.5: pending-pack records are an optimisation; a bad one is only a warning."""
    warnings: list[str] = []
    d = os.path.join(vault, "pending")
    if not os.path.isdir(d):
        return warnings
    for name in sorted(n for n in os.listdir(d) if MARK_NAME.match(n)):
        path = f"pending/{name}"
        try:
            plain = read_envelope(os.path.join(d, name), KIND_PENDING, name, keys)
            p = strict_object(json_bytes(plain, path), path, PENDING_FIELDS)
            if want(p["version"], int, "pending version") > 1:
                raise VaultError(f"pending version {p['version']} is newer than this reader supports")
            if p["id"] != name:
                raise VaultError("its id differs from its file name")
            want(p["packs"], list, "packs")
        except VaultError as err:
            warnings.append(f"{path}: {err}")
    return warnings


def check_marks(vault: str, keys: Keys) -> list[str]:
    """FORMAT.md §9.4: every deletion mark decrypts under its name and is well formed."""
    problems: list[str] = []
    d = os.path.join(vault, "marks")
    if not os.path.isdir(d):
        return problems
    for name in sorted(n for n in os.listdir(d) if MARK_NAME.match(n)):
        path = f"marks/{name}"
        try:
            plain = read_envelope(os.path.join(d, name), KIND_MARK, name, keys)
            m = strict_object(json_bytes(plain, path), path, {"version", "id", "time", "host", "grace_seconds", "data"})
            if want(m["version"], int, "mark version") > MARK_VERSION:
                raise VaultError(f"mark version {m['version']} is newer than this reader supports")
            if m["id"] != name:
                raise VaultError("its id differs from its file name")
            parse_time(m["time"], "time")
            if want(m["grace_seconds"], int, "grace_seconds") < MIN_GRACE_SECONDS:
                raise VaultError(f"grace period {m['grace_seconds']} s is below {MIN_GRACE_SECONDS} s")
            for x in want(m["data"], list, "data"):
                want_hex(x, HEX64, "marked data id")
        except VaultError as err:
            problems.append(f"{path}: {err}")
    return problems


# --- self test: the test vectors of FORMAT.md §12 --------------------------------------------

VECTOR_SLOT = {
    "version": 1,
    "id": "ffeeddccbbaa99887766554433221100",
    "kdf": {"algorithm": "argon2id", "memory_kib": 1024, "iterations": 1, "parallelism": 1,
            "salt": "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo="},
    "cipher": "xchacha20poly1305",
    "nonce": "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZX",
    "wrapped_key": "jvb5L032GhQJVpIKLoXmSGaytN6AD/FeSOr6Ay/FAQl6Cic6uiUeghUEe+mxedUT",
}
VECTOR_ENVELOPE = ("4749545641554c540104000000a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2"
                   "46cfdb8b348a18899b745ebe0fed26d8be1109230f")


def selftest() -> None:
    import tempfile
    master = open_slot(VECTOR_SLOT, bytes.fromhex("00112233445566778899aabbccddeeff"),
                       b"correct horse battery staple")
    assert master == bytes(range(32)), "key slot vector"
    keys = derive_keys(master)
    assert keys.data.hex() == "32974693a5aa7c596a777b541b2dd83269c53b391070bb3907c6e81db7c279bc", "data key"
    assert keys.mac.hex() == "8ad944fc4a607696e70161876bce8bc3b022b1d7eb269c0225eda83a7e74cd3c", "mac key"
    assert mac(keys.mac, b"hello") == "2e63baf8cb2ed2109af511aa249478f1a0ec4e47c95342e79bb83dda3b8243d6", "mac"
    # Version 3: the preferred name of an LFS object (FORMAT.md §7.6), here the one of "hello".
    oid = hashlib.sha256(b"hello").hexdigest()
    lfs_id = blake3.blake3(b"gitvault lfs object id v1\0" + oid.encode(), key=keys.mac).hexdigest()
    assert lfs_id == "0f0a8772e2342fc42c3a80c79b7fbb0358834f224180dd131417fd596fa2baf4", "lfs object id"
    with tempfile.NamedTemporaryFile() as f:
        f.write(bytes.fromhex(VECTOR_ENVELOPE))
        f.flush()
        assert read_envelope(f.name, KIND_LEDGER, "7", keys) == b"hello", "envelope"
        for wrong_id in ("07", "8"):
            try:
                read_envelope(f.name, KIND_LEDGER, wrong_id, keys)
            except VaultError:
                pass
            else:
                raise AssertionError("an envelope opened under the wrong id")
    print("selftest: the test vectors of FORMAT.md check out")


# --- command line ----------------------------------------------------------------------------


def passphrase() -> bytes:
    p = os.environ.get("GITVAULT_PASSWORD")
    if not p:
        raise UsageError("set GITVAULT_PASSWORD to the vault passphrase")
    return p.encode("utf-8")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Independent reader of gitvault vaults (format versions 1 to 5).")
    ap.add_argument("--vault", default=os.environ.get("GITVAULT_VAULT"), help="the vault directory [env GITVAULT_VAULT]")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("snapshots", help="list snapshots, oldest first: id, time, repositories")
    r = sub.add_parser("restore", help="rebuild one repository of a snapshot as a bare repository")
    r.add_argument("snapshot", help="snapshot id, unique prefix, or 'latest'")
    r.add_argument("--repo", help="repository name or unambiguous suffix")
    r.add_argument("--target", required=True, help="new or empty directory for the bare repository")
    sub.add_parser("verify-ledger", help="check the ledger's hash chain and what it records")
    s = sub.add_parser("show-snapshot", help="print a snapshot's JSON document")
    s.add_argument("snapshot")
    dcr = sub.add_parser("decrypt", help="write a data object's plaintext to stdout")
    dcr.add_argument("data_id")
    dcr.add_argument("--kind", choices=["pack", "index", "lfs"], required=True)
    sub.add_parser("selftest", help="check this reader against the test vectors of FORMAT.md")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        if a.cmd == "selftest":
            selftest()
            return 0
        if not a.vault:
            raise UsageError("--vault DIR is required")
        config = read_config(a.vault)
        keys = unlock(a.vault, config, passphrase())
        if a.cmd == "snapshots":
            for snap in all_snapshots(a.vault, keys):
                names = ",".join(repo["name"] for repo in snap["repositories"])
                print(f"{snap['id']}  {snap['time']}  {names}")
        elif a.cmd == "show-snapshot":
            snap = resolve(all_snapshots(a.vault, keys), a.snapshot)
            _, plain = read_snapshot(a.vault, snap["id"], keys)
            print(json.dumps(json.loads(plain), indent=2))
        elif a.cmd == "decrypt":
            want_hex(a.data_id, HEX64, "data id")
            kind = {"pack": KIND_PACK, "index": KIND_INDEX, "lfs": KIND_LFS}[a.kind]
            out = sys.stdout.buffer
            for piece in open_envelope(data_path(a.vault, a.data_id), kind, a.data_id, keys):
                out.write(piece)
            out.flush()
        elif a.cmd == "restore":
            snap = resolve(all_snapshots(a.vault, keys), a.snapshot)
            repo = select_repo(snap, a.repo)
            restore(a.vault, keys, snap, repo, a.target)
            print(f"restored {repo['name']} of snapshot {snap['id']} into {a.target}: "
                  f"{len(repo['refs'])} refs, {len(repo['chain'])} packs, {len(repo.get('lfs', []))} LFS objects")
        elif a.cmd == "verify-ledger":
            problems, warnings, n = verify_ledger(a.vault, config, keys)
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            for p in problems:
                print(f"problem: {p}")
            if problems:
                print(f"ledger: {n} entries, {len(problems)} problem(s)")
                return 1
            print(f"ledger: {n} entries, chain intact")
        return 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (VaultError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
