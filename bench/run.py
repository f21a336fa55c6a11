#!/usr/bin/env python3
"""Benchmark gitvault against the tools a user would otherwise reach for.

Why: gitvault's claims (small incrementals, nothing stored for a repack,
cheap no-change runs, fast restores) only mean something next to a floor
(`git bundle`, the raw cost of moving the objects) and next to the general
purpose encrypted backup tools people already use (restic, borg, rustic).
This runner measures them side by side, in one run, on the same generated
repositories, and reports medians and gitvault/reference ratios.

For every repetition and every tool, with a fresh vault each time:
  1. full backup of a fresh copy of the source      -> time, stored bytes, peak RSS
  6. a second backup with nothing changed          -> time, bytes added
  2. `genrepo.py --add-commits 20`, then a backup  -> time, bytes added, peak RSS
  5. restore of the latest snapshot                -> time, peak RSS (refs checked)
  3. the source after `git repack -adf` (same objects, new pack), backup
                                                   -> time, bytes added
Then once per size (a size measurement, so one repetition; --days N, 0 skips):
  4. thirty daily incrementals: every tool, one vault each, backs up the same
     live repository after each day's churn (5-15 commits from genrepo.py,
     sometimes a branch deleted or a tag added), with `git gc --prune=now` of
     the source on days 7, 14, 21 and 28   -> vault size after 30 days
(The numbers follow issue 6's scenario list; the order above is the order in
which they run, because each step builds on the vault of the previous one.
Scenario 7, the 1,000-repository account, is bench/forge.py.)

Methodology, kept deliberately simple so anyone can rerun it:
  * wall time is time.perf_counter() around each child process;
  * peak RSS is ru_maxrss from os.wait4() on the child -- the same number
    GNU `time -f %M` prints: the largest RSS of the child and of every
    descendant it waited for;
  * stored bytes are apparent bytes (sum of file sizes) of the vault directory;
  * the page cache is warmed by reading the source before each measured backup
    (every tool sees the same warm cache; cold-cache numbers on a VM are noise);
  * tools run one after another, never concurrently, in an order rotated per
    repetition so that no tool always runs first;
  * reference tools run with their defaults (restic: repository v2 with
    compression "auto"; borg: repokey-blake2, lz4) -- what a user gets.

Output: bench/results/<date>-<size>.json (every repetition, raw) and
BENCHMARKS.md at the repository root, rebuilt from the newest result of each
size found in bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import json
import re
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
GENREPO = os.path.join(BENCH, "genrepo.py")
RESULTS = os.path.join(BENCH, "results")
REPORT = os.path.join(ROOT, "BENCHMARKS.md")
PASSWORD = "bench-password-not-secret"
ADD_COMMITS = 20
ALL_TOOLS = ["bundle", "restic", "borg", "rustic", "gitvault"]
REFERENCE_TOOLS = ["bundle", "restic", "borg", "rustic"]  # table order; gitvault comes last
DAYS = 30  # scenario 4: daily incrementals
GC_DAYS = (7, 14, 21, 28)  # ... with a `git gc --prune=now` of the source before the backup
RSS_LIMIT = 300_000_000  # target: gitvault's own peak memory < 300 MB at every size
BUSY = 0.15  # CPU use by others before a run above which results are flagged as noisy


class ToolError(Exception):
    """A tool failed or is unavailable; the run goes on without it."""


# ---------------------------------------------------------------------------
# Measuring child processes
# ---------------------------------------------------------------------------


@dataclass
class Measure:
    seconds: float
    rss_kb: int

    def __add__(self, other: "Measure") -> "Measure":
        return Measure(self.seconds + other.seconds, max(self.rss_kb, other.rss_kb))


ZERO = Measure(0.0, 0)


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None,
            log: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> tuple[Measure, int]:
    """Run cmd, return its wall time, peak RSS and exit code.

    Output goes to a log file, not a pipe, so that we can reap the child with
    os.wait4() ourselves and read its rusage."""
    full_env = dict(os.environ, **(env or {}))
    logf = open(log or os.devnull, "ab")
    if log:
        logf.write(f"\n$ {' '.join(cmd)}\n".encode())
        logf.flush()
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=logf, stderr=logf)
    except FileNotFoundError as e:
        logf.close()
        raise ToolError(f"{cmd[0]}: not found") from e
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    logf.close()
    if p.returncode not in ok_codes:
        tail = ""
        if log:
            with open(log, "rb") as f:
                tail = f.read()[-1500:].decode(errors="replace")
        raise ToolError(f"{' '.join(cmd[:3])}... exited {p.returncode}\n{tail}")
    return Measure(seconds, usage.ru_maxrss), p.returncode


def out(cmd: list[str], cwd: str | None = None, env: dict | None = None) -> str:
    """Output of a quick helper command (not measured)."""
    return subprocess.run(cmd, cwd=cwd, env=dict(os.environ, **(env or {})), check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout


def apparent_bytes(path: str) -> int:
    """Sum of file sizes under path (like `du -sb --apparent-size`)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def warm(path: str) -> None:
    """Read every file once so each tool starts with the same warm page cache."""
    for dirpath, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def refs_of(repo: str) -> str:
    return out(["git", "-C", repo, "for-each-ref", "--format=%(refname) %(objectname)"])


def existing_objects(repo: str, oids: set[str]) -> list[str]:
    """The oids that the repository still has, sorted."""
    p = subprocess.run(["git", "-C", repo, "cat-file", "--batch-check=%(objectname) ok"],
                       input="".join(f"{o}\n" for o in sorted(oids)), text=True,
                       stdout=subprocess.PIPE, check=True)
    return [line.split()[0] for line in p.stdout.splitlines() if line.endswith(" ok")]  # else "<oid> missing"


def find_git_dir(root: str) -> str | None:
    """The bare repository somewhere under a restore target (tools nest it
    under the original absolute path, or not at all)."""
    for dirpath, dirs, files in os.walk(root):
        if "HEAD" in files and "objects" in dirs and "refs" in dirs:
            return dirpath
        dirs.sort()
    return None


def rmtree(path: str) -> None:
    if os.path.lexists(path):
        shutil.rmtree(path)


# ---------------------------------------------------------------------------
# The tools
# ---------------------------------------------------------------------------


class Tool:
    """One backup tool. Subclasses run its real command lines."""

    name = ""
    label = ""

    def __init__(self, workdir: str, log: str):
        self.work = workdir  # scratch space for caches and keys, fresh per rep
        self.log = log
        self.vault = os.path.join(workdir, "vault")
        self.n = 0  # backups made into the current vault
        # Peak RSS of the tool's own process in its last command, when the tool reports it
        # (gitvault -v); ru_maxrss from wait4 is the largest of it and its children.
        self.own_rss_kb: int | None = None

    def version(self) -> str:
        raise NotImplementedError

    def init(self) -> Measure:
        raise NotImplementedError

    def backup(self, src: str) -> Measure:
        raise NotImplementedError

    def restore(self, target: str) -> Measure:
        raise NotImplementedError

    def extra(self) -> dict:
        """Tool-specific facts recorded after a repetition (not timed)."""
        return {}

    def run(self, cmd: list[str], **kw) -> Measure:
        return measure(cmd, log=self.log, **kw)[0]

    def reset(self) -> None:
        """Forget the vault: the next init starts a new one."""
        rmtree(self.vault)
        self.n = 0


class Bundle(Tool):
    """The floor: `git bundle` of everything new since the previous backup,
    restored with `git clone --mirror` plus one fetch per incremental."""

    name, label = "bundle", "git bundle"

    def __init__(self, workdir: str, log: str):
        super().__init__(workdir, log)
        self.last_refs: str | None = None
        self.bundles: list[str] = []

    def reset(self) -> None:
        super().reset()
        self.last_refs = None
        self.bundles = []

    def version(self) -> str:
        return out(["git", "--version"]).strip()

    def init(self) -> Measure:
        os.makedirs(self.vault)
        return ZERO

    def backup(self, src: str) -> Measure:
        # A ref listing is all a no-change backup has to do.
        t0 = time.perf_counter()
        refs = refs_of(src)
        m = Measure(time.perf_counter() - t0, 0)
        if refs == self.last_refs:
            return m
        path = os.path.join(self.vault, f"{len(self.bundles):04d}.bundle")
        cmd = ["git", "-C", src, "bundle", "create", "-q", path, "--all"]
        if self.last_refs:
            # Tips of branches deleted since, and pruned by a `git gc --prune=now`
            # (scenario 4), are gone: leave them out, or git refuses ("bad object").
            cmd += ["--not"] + existing_objects(src, {line.split()[1] for line in self.last_refs.splitlines()})
        m2, code = measure(cmd, log=self.log, ok_codes=(0, 128))
        if code == 0:
            self.bundles.append(path)
        elif os.path.exists(path):  # "Refusing to create empty bundle"
            os.unlink(path)
        # An incremental bundle carries only the refs that moved; the full listing
        # (a few kB) is what tells a restore which refs were deleted since.
        with open(os.path.join(self.vault, "refs.txt"), "w") as f:
            f.write(refs)
        self.last_refs = refs
        return m + m2

    def restore(self, target: str) -> Measure:
        repo = os.path.join(target, "restored.git")
        m = self.run(["git", "-c", "init.defaultBranch=main", "clone", "-q", "--mirror", self.bundles[0], repo])
        # An incremental bundle lists only the refs that moved, so no --prune
        # (it would delete every unchanged ref).
        for b in self.bundles[1:]:
            m = m + self.run(["git", "-C", repo, "fetch", "-q", b, "+refs/*:refs/*"])
        with open(os.path.join(self.vault, "refs.txt")) as f:
            keep = {line.split()[0] for line in f.read().splitlines()}
        gone = [ref for ref in out(["git", "-C", repo, "for-each-ref", "--format=%(refname)"]).split()
                if ref not in keep]
        if gone:  # branches deleted in the source since an earlier bundle
            t0 = time.perf_counter()
            subprocess.run(["git", "-C", repo, "update-ref", "--stdin"], check=True, text=True,
                           input="".join(f"delete {ref}\n" for ref in gone))
            m = m + Measure(time.perf_counter() - t0, 0)
        return m


class Restic(Tool):
    """restic: content-defined chunking, dedup, always encrypted."""

    name, label = "restic", "restic"

    def env(self) -> dict:
        return {"RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": self.vault,
                "RESTIC_CACHE_DIR": os.path.join(self.work, "cache")}

    def version(self) -> str:
        return out(["restic", "version"]).strip()

    def init(self) -> Measure:
        return self.run(["restic", "init", "-q"], env=self.env())

    def backup(self, src: str) -> Measure:
        # A fixed --host keeps parent-snapshot detection working, so restic's
        # incrementals use its file metadata cache like in real use.
        self.n += 1
        return self.run(["restic", "backup", "-q", "--host", "bench", src], env=self.env())

    def restore(self, target: str) -> Measure:
        return self.run(["restic", "restore", "-q", "latest", "--target", target], env=self.env())


def find_rustic() -> str | None:
    """rustic where bench/setup.sh installs it, else the reference machine's tools dir, else PATH."""
    candidates = [os.path.join(os.environ.get("GITVAULT_BENCH_TOOLS")
                               or os.path.expanduser("~/.cache/gitvault-bench"), "bin", "rustic"),
                  "/work/.bench-tools/bin/rustic"]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which("rustic")


class Rustic(Tool):
    """rustic: restic's repository format reimplemented in Rust; dedup, always encrypted."""

    name, label = "rustic", "rustic"
    binary: str | None = None  # set by main() (--rustic, else find_rustic())

    def env(self) -> dict:
        # No config profile (XDG_CONFIG_HOME and the working directory are ours, and
        # hold no rustic.toml), the cache in the per-repetition work dir, no progress bars.
        return {"RUSTIC_PASSWORD": PASSWORD, "RUSTIC_CACHE_DIR": os.path.join(self.work, "cache"),
                "XDG_CONFIG_HOME": os.path.join(self.work, "config"), "RUSTIC_NO_PROGRESS": "true"}

    def cmd(self, *args: str) -> list[str]:
        if not self.binary:
            raise ToolError("rustic not found (bench/setup.sh installs it with cargo install rustic-rs)")
        return [self.binary, "-r", self.vault, *args]

    def version(self) -> str:
        if not self.binary:
            raise ToolError("rustic not found")
        return out([self.binary, "--version"]).strip()

    def init(self) -> Measure:
        return self.run(self.cmd("init"), env=self.env(), cwd=self.work)

    def backup(self, src: str) -> Measure:
        self.n += 1
        return self.run(self.cmd("backup", "--host", "bench", src), env=self.env(), cwd=self.work)

    def restore(self, target: str) -> Measure:
        return self.run(self.cmd("restore", "latest", target), env=self.env(), cwd=self.work)


class Borg(Tool):
    """borg: chunking, dedup, repokey-blake2 encryption."""

    name, label = "borg", "borg"

    def env(self) -> dict:
        return {"BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": os.path.join(self.work, "home"),
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "BORG_DISPLAY_PASSPHRASE": "no"}

    def version(self) -> str:
        return out(["borg", "--version"]).strip()

    def init(self) -> Measure:
        return self.run(["borg", "init", "--encryption=repokey-blake2", self.vault], env=self.env())

    def backup(self, src: str) -> Measure:
        self.n += 1
        return self.run(["borg", "create", f"{self.vault}::b{self.n}", src], env=self.env())

    def restore(self, target: str) -> Measure:
        os.makedirs(target, exist_ok=True)
        return self.run(["borg", "extract", f"{self.vault}::b{self.n}"], env=self.env(), cwd=target)


class Gitvault(Tool):
    """gitvault itself: full first, then incrementals."""

    name, label = "gitvault", "gitvault"
    binary = ""

    def env(self) -> dict:
        # A fresh cache per repetition, like restic's and borg's.
        # The catalog (SQLite record of runs) too: one per repetition, not the user's.
        return {"GITVAULT_PASSWORD": PASSWORD, "GITVAULT_CACHE_DIR": os.path.join(self.work, "cache"),
                "GITVAULT_CATALOG": os.path.join(self.work, "catalog.db")}

    def version(self) -> str:
        if not os.path.isfile(self.binary):
            raise ToolError(f"gitvault binary {self.binary} not found")
        try:
            return out([self.binary, "--version"]).strip()
        except subprocess.CalledProcessError as e:
            raise ToolError(f"{self.binary} --version failed: {e.output.strip()[:200]}") from e

    def init(self) -> Measure:
        return self.run([self.binary, "init", "--vault", self.vault], env=self.env())

    def backup(self, src: str) -> Measure:
        kind = [] if self.n == 0 else ["--type", "incr"]
        self.n += 1
        return self.run([self.binary, "-v", "backup", "--vault", self.vault, *kind, src], env=self.env())

    def restore(self, target: str) -> Measure:
        # For one repository --target is the bare repository itself (a new path).
        return self.run([self.binary, "-v", "restore", "--vault", self.vault, "latest",
                         "--target", os.path.join(target, "restored.git")], env=self.env())

    def run(self, cmd: list[str], **kw) -> Measure:
        """Run and read gitvault's own peak RSS from its -v log line
        (`peak_rss_kib=N`: VmHWM of the gitvault process, git children not included)."""
        start = os.path.getsize(self.log) if os.path.isfile(self.log) else None
        m = super().run(cmd, **kw)
        self.own_rss_kb = None
        if start is not None:
            with open(self.log, "rb") as f:
                f.seek(start)
                found = re.findall(rb"peak_rss_kib=(\d+)", f.read())
            if found:
                self.own_rss_kb = int(found[-1])
        return m

    def extra(self) -> dict:
        try:
            snaps = json.loads(out([self.binary, "snapshots", "--vault", self.vault, "--json"],
                                   env=self.env()))
            return {"snapshots": len(snaps)}
        except (subprocess.CalledProcessError, ValueError) as e:
            return {"snapshots_error": str(e)[:200]}


TOOLS = {t.name: t for t in (Bundle, Restic, Borg, Rustic, Gitvault)}
# Tools that also run scenario 1 from a source that is not one pack; for restic, borg and
# rustic one stray file more changes nothing.
PACKED_TOOLS = ("bundle", "gitvault")


def ensure_gitvault(path: str, build: bool) -> str | None:
    """Return None if the binary is usable, else the reason to skip it.

    Builds it with cargo when it is missing (unless --no-build)."""
    if not os.path.isfile(path) and build and shutil.which("cargo"):
        print(f"gitvault: {path} missing, running cargo build --release -p gitvault ...", flush=True)
        r = subprocess.run(["cargo", "build", "--release", "-p", "gitvault"], cwd=ROOT)
        if r.returncode != 0:
            return "cargo build --release -p gitvault failed"
    if not os.path.isfile(path):
        return f"binary {path} not found (build it, or pass --gitvault PATH)"
    Gitvault.binary = path
    try:
        Gitvault("", os.devnull).version()
    except ToolError as e:
        return str(e)
    return None


# ---------------------------------------------------------------------------
# Source repositories
# ---------------------------------------------------------------------------


def file_sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def repo_stats(repo: str) -> dict:
    kv = dict(line.split(": ", 1) for line in out(["git", "-C", repo, "count-objects", "-v"]).splitlines())
    return {"objects": int(kv["count"]) + int(kv["in-pack"]),
            "packed_bytes": (int(kv["size"]) + int(kv["size-pack"])) * 1024,
            "apparent_bytes": apparent_bytes(repo),
            "commits": int(out(["git", "-C", repo, "rev-list", "--all", "--count"])),
            "refs": len(refs_of(repo).splitlines())}


def cached_repo(path: str, key: dict, build) -> dict:
    """Build a repository once and reuse it while its key (generator version,
    git version, parameters) is unchanged; return its stamp."""
    stamp_path = path + ".stamp.json"
    if os.path.isdir(path) and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            stamp = json.load(f)
        if stamp.get("key") == key:
            return stamp
    rmtree(path)
    t0 = time.perf_counter()
    build()
    stamp = {"key": key, "seconds": round(time.perf_counter() - t0, 2), "stats": repo_stats(path)}
    with open(stamp_path, "w") as f:
        json.dump(stamp, f, indent=1)
    return stamp


def prepare_sources(work: str, size: str, seed: int) -> tuple[str, str, dict]:
    """The generated source, and the same source +20 commits after
    `git repack -adf` (prepared once: repacking per repetition would cost
    more than the benchmark and gives every tool the same input anyway)."""
    os.makedirs(os.path.join(work, "src"), exist_ok=True)
    key = {"genrepo": file_sha(GENREPO), "git": out(["git", "--version"]).strip(), "size": size, "seed": seed}
    src = os.path.join(work, "src", f"{size}-s{seed}.git")
    print(f"[{size}] source repository {src}", flush=True)
    s1 = cached_repo(src, key, lambda: subprocess.run(
        [sys.executable, GENREPO, "--size", size, "--seed", str(seed), src], check=True))
    repacked = os.path.join(work, "src", f"{size}-s{seed}-add{ADD_COMMITS}-repacked.git")

    def build_repacked() -> None:
        shutil.copytree(src, repacked, symlinks=True)
        subprocess.run([sys.executable, GENREPO, "--add-commits", str(ADD_COMMITS), "--seed", str(seed),
                        repacked], check=True)
        # Single-threaded so that the pack is byte-identical from run to run.
        subprocess.run(["git", "-C", repacked, "-c", "pack.threads=1", "repack", "-adf", "-q"], check=True)

    s2 = cached_repo(repacked, dict(key, step=f"add{ADD_COMMITS}+repack-adf"), build_repacked)
    return src, repacked, {"source": s1, "add_repacked": s2}


# ---------------------------------------------------------------------------
# One repetition of one tool
# ---------------------------------------------------------------------------


def copy_repo(src: str, dst: str) -> None:
    rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)  # copy2 keeps mtimes, like cp -a


def own(r: dict, step: str, tool: Tool) -> None:
    """Record the tool's own-process peak RSS of its last command, if it reported one."""
    if tool.own_rss_kb is not None:
        r[f"{step}_own_rss_kb"] = tool.own_rss_kb


def run_chain(tool: Tool, src: str, repacked: str, seed: int, run_dir: str) -> dict:
    """All scenarios for one tool into one fresh vault; returns metrics."""
    live = os.path.join(run_dir, "live.git")  # the same path for every backup
    target = os.path.join(run_dir, "restore")
    r: dict = {}
    if tool.name in PACKED_TOOLS:
        # Scenario 1 again from a source that is not exactly one pack (here one stray loose
        # object): gitvault cannot store the source's pack as it is and has git write a new one.
        copy_repo(src, live)
        subprocess.run(["git", "-C", live, "hash-object", "-w", "--stdin"], input=b"a stray loose object\n",
                       check=True, stdout=subprocess.DEVNULL)
        tool.init()
        warm(live)
        m = tool.backup(live)
        r.update(full_packed_s=m.seconds, full_packed_rss_kb=m.rss_kb)
        tool.reset()
    copy_repo(src, live)

    r["init_s"] = tool.init().seconds
    warm(live)
    m = tool.backup(live)
    r.update(full_s=m.seconds, full_rss_kb=m.rss_kb, full_bytes=apparent_bytes(tool.vault))
    own(r, "full", tool)
    if r["full_bytes"] < 1000:  # e.g. a stub binary that exits 0 and does nothing
        raise ToolError(f"full backup stored only {r['full_bytes']} bytes")

    before = apparent_bytes(tool.vault)
    m = tool.backup(live)
    r.update(nochange_s=m.seconds, nochange_bytes_added=apparent_bytes(tool.vault) - before)

    subprocess.run([sys.executable, GENREPO, "--add-commits", str(ADD_COMMITS), "--seed", str(seed), live],
                   check=True, stdout=subprocess.DEVNULL)
    warm(live)
    before = apparent_bytes(tool.vault)
    m = tool.backup(live)
    r.update(incr_s=m.seconds, incr_rss_kb=m.rss_kb, incr_bytes_added=apparent_bytes(tool.vault) - before)
    own(r, "incr", tool)

    expected = refs_of(live)
    rmtree(target)
    os.makedirs(target)
    m = tool.restore(target)
    got = find_git_dir(target)
    r.update(restore_s=m.seconds, restore_rss_kb=m.rss_kb,
             restore_ok=bool(got) and refs_of(got) == expected)
    own(r, "restore", tool)
    rmtree(target)

    if refs_of(repacked) != expected:
        raise ToolError("internal: the prepared repacked source does not match --add-commits output")
    copy_repo(repacked, live)
    warm(live)
    before = apparent_bytes(tool.vault)
    m = tool.backup(live)
    r.update(repack_s=m.seconds, repack_rss_kb=m.rss_kb, repack_bytes_added=apparent_bytes(tool.vault) - before)
    own(r, "repack", tool)
    r.update(tool.extra())
    return r


# ---------------------------------------------------------------------------
# Scenario 4: thirty daily incrementals
# ---------------------------------------------------------------------------


def day_plan(seed: int, day: int) -> dict:
    """What happens to the source on one day, deterministically from the seed:
    5-15 commits (genrepo.py also opens feature branches and deletes ~70 % of
    those it merges), an unmerged branch deleted on ~1 day in 5 (its objects
    become unreachable: the next gc prunes them), a release tag every 10 days,
    and `git gc --prune=now` on days 7, 14, 21, 28, as servers do."""
    rng = random.Random(f"gitvault-bench:days:{seed}:{day}")
    return {"day": day, "commits": rng.randint(5, 15), "delete_branch": rng.random() < 0.2,
            "tag": day % 10 == 0, "gc": day in GC_DAYS}


def churn(live: str, seed: int, plan: dict, log: str) -> dict:
    """Apply one day's plan to the live repository; returns what was done."""
    done: dict = {}
    with open(log, "ab") as logf:
        subprocess.run([sys.executable, GENREPO, "--add-commits", str(plan["commits"]), "--seed", str(seed), live],
                       check=True, stdout=logf, stderr=logf)
    if plan["delete_branch"]:
        branches = [b for b in out(["git", "-C", live, "for-each-ref", "--format=%(refname)", "refs/heads/"]).split()
                    if b != "refs/heads/main"]
        if branches:
            victim = random.Random(f"gitvault-bench:days:{seed}:{plan['day']}:victim").choice(sorted(branches))
            out(["git", "-C", live, "update-ref", "-d", victim])
            done["deleted"] = victim
    if plan["tag"]:
        out(["git", "-C", live, "update-ref", f"refs/tags/day-{plan['day']}", "refs/heads/main"])
        done["tagged"] = f"refs/tags/day-{plan['day']}"
    if plan["gc"]:
        # Single-threaded so that every run gets the same pack (see genrepo.py).
        t0 = time.perf_counter()
        out(["git", "-C", live, "-c", "pack.threads=1", "gc", "--prune=now", "--quiet"])
        done["gc_s"] = round(time.perf_counter() - t0, 2)
    return done


def pack_bytes(repo: str, tips: list[str], exclude: list[str]) -> int:
    """Size of a self-contained (not thin) pack of the objects reachable from tips
    and not from exclude: what an incremental costs when its pack must stand alone
    (gitvault's did before format version 5). A `git bundle` is a thin pack: its
    deltas may point at objects of earlier bundles, so it can be smaller."""
    revs = "".join(f"{t}\n" for t in tips) + "".join(f"^{x}\n" for x in exclude)
    # Counted as it streams: holding a full pack in this process would raise its RSS,
    # which every child forked afterwards inherits in its ru_maxrss.
    with open(os.devnull, "wb") as sink:
        p = subprocess.Popen(["git", "-C", repo, "pack-objects", "--revs", "--stdout", "-q"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink)
        p.stdin.write(revs.encode())
        p.stdin.close()
        total = 0
        while chunk := p.stdout.read(1 << 20):
            total += len(chunk)
        if p.wait() != 0:
            raise ToolError(f"git pack-objects --revs in {repo} exited {p.returncode}")
    return total


def days_disk_need(src_bytes: int, tools: list[str], days: int) -> int:
    """A rough upper bound of the disk the scenario needs: the chunking tools may
    store the whole repository again after every gc; gitvault and the bundles
    about once; plus the live copy and a restore."""
    gcs = len([d for d in GC_DAYS if d <= days])
    chunkers = len([t for t in tools if t in ("restic", "borg", "rustic")])
    return int(src_bytes * (1.3 * chunkers * (1 + gcs) + 1.5 * (len(tools) - chunkers) + 3))


def run_days(size: str, src: str, args, tools: list[str], log: str, groups: list[list[str]]) -> dict:
    """Scenario 4: one vault per tool; day 0 a full backup, then `args.days` days of
    churn, each followed by a backup of the live repository.

    `groups`: the tools of a group back up the same live repository in lockstep
    (normally one group of all tools). When the disk cannot hold every vault at once
    (large), each tool is a group of its own: it replays the same days on a fresh copy
    of the source (genrepo.py and the single-threaded gc are deterministic; the refs
    after every day are compared with the first group's) and its vault is deleted
    once measured."""
    run_dir = os.path.join(args.workdir, "run")
    rec: dict = {}
    schedule: list[dict] = []
    mismatch: list[str] = []
    final_bundle_bytes = source_final = None
    t_start = time.perf_counter()
    for gi, group in enumerate(groups):
        rmtree(run_dir)
        os.makedirs(run_dir)
        live = os.path.join(run_dir, "live.git")  # the same path for every backup and group
        copy_repo(src, live)
        insts = {}
        for t in group:
            insts[t] = TOOLS[t](os.path.join(run_dir, f"days-{t}"), log)
            os.makedirs(insts[t].work)
            rec[t] = {"day_s": [], "day_bytes_added": [], "day_rss_kb": [], "day_own_rss_kb": []}
        for day in range(args.days + 1):
            plan = day_plan(args.seed, day) if day else {"day": 0, "commits": 0, "gc": False}
            if day:
                plan.update(churn(live, args.seed, plan, log))
            refs_now = refs_of(live)
            refs_hash = hashlib.sha256(refs_now.encode()).hexdigest()[:16]
            if gi == 0:
                st = repo_stats(live)
                tips = sorted({line.split()[1] for line in refs_now.splitlines()})
                prev = existing_objects(live, set(schedule[-1]["tips"])) if schedule else []
                plan.update(source_packed_bytes=st["packed_bytes"], source_refs=st["refs"], refs_sha=refs_hash,
                            tips=tips, day_pack_bytes=pack_bytes(live, tips, prev))
                schedule.append(plan)
            elif schedule[day]["refs_sha"] != refs_hash:
                mismatch.append(f"{','.join(group)} day {day}")
            warm(live)
            order = group[day % len(group):] + group[:day % len(group)]
            notes = []
            for t in order:
                tool, r = insts[t], rec[t]
                if "error" in r:
                    continue
                try:
                    if day == 0:
                        tool.init()
                    os.sync()  # the previous tool's dirty pages are not this tool's cost
                    before = apparent_bytes(tool.vault)
                    m = tool.backup(live)
                    added = apparent_bytes(tool.vault) - before
                    r["day_s"].append(round(m.seconds, 4))
                    r["day_bytes_added"].append(added)
                    r["day_rss_kb"].append(m.rss_kb)
                    r["day_own_rss_kb"].append(tool.own_rss_kb)
                    notes.append(f"{t} {m.seconds:.2f}s +{added / 1e6:.2f}MB")
                except ToolError as e:
                    r["error"] = f"day {day}: {e}"
                    notes.append(f"{t} FAILED")
                    print(f"[{size}] day {day}: {t}: FAILED: {e}", flush=True)
            what = (f"+{plan['commits']} commits" + (", branch deleted" if plan.get("deleted") else "")
                    + (", gc" if plan["gc"] else "")) if day else "full"
            print(f"[{size}] day {day}/{args.days} ({what}): " + ", ".join(notes)
                  + f"  [{time.perf_counter() - t_start:.0f}s]", flush=True)
        expected = refs_of(live)
        target = os.path.join(run_dir, "restore")
        for t in group:
            r = rec[t]
            if "error" in r:
                continue
            r["vault_bytes"] = apparent_bytes(insts[t].vault)
            rmtree(target)
            os.makedirs(target)
            try:
                m = insts[t].restore(target)
                got = find_git_dir(target)
                r.update(restore_s=round(m.seconds, 4), restore_ok=bool(got) and refs_of(got) == expected)
            except ToolError as e:
                r.update(restore_ok=False, restore_error=str(e)[:500])
            rmtree(target)
            r.update(insts[t].extra())
        if gi == 0:
            # The floor, two ways: the bundle tool's vault is the sum of the day-0 full
            # bundle and the daily incremental ones; one full bundle of the final
            # repository is what a fresh export would be (deleted branches left out).
            final_bundle = os.path.join(run_dir, "final.bundle")
            subprocess.run(["git", "-C", live, "bundle", "create", "-q", final_bundle, "--all"], check=True)
            final_bundle_bytes = os.path.getsize(final_bundle)
            source_final = repo_stats(live)
        if not args.keep or gi < len(groups) - 1:
            rmtree(run_dir)
    for plan in schedule:
        plan.pop("tips", None)  # only needed for the next day's pack
    return {"days": args.days, "gc_days": [d for d in GC_DAYS if d <= args.days], "schedule": schedule,
            "lockstep": len(groups) == 1, "replay_mismatch": mismatch,
            "tools": rec, "final_bundle_bytes": final_bundle_bytes,
            "source_final": source_final, "seconds": round(time.perf_counter() - t_start, 1)}


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

ROWS = [  # (scenario, metric label, key, kind); numbered as in issue 6
    ("1. Full backup", "time", "full_s", "s"),
    ("1. Full backup", "stored", "full_bytes", "B"),
    ("1. Full backup", "peak RSS, with children", "full_rss_kb", "kB"),
    ("1. Full backup", "peak RSS, own process", "full_own_rss_kb", "kB"),
    ("1. Full backup, source not one pack", "time", "full_packed_s", "s"),
    ("2. Incremental, +20 commits", "time", "incr_s", "s"),
    ("2. Incremental, +20 commits", "bytes added", "incr_bytes_added", "B"),
    ("2. Incremental, +20 commits", "peak RSS, with children", "incr_rss_kb", "kB"),
    ("2. Incremental, +20 commits", "peak RSS, own process", "incr_own_rss_kb", "kB"),
    ("3. After `git repack -adf`", "bytes added", "repack_bytes_added", "B"),
    ("3. After `git repack -adf`", "time", "repack_s", "s"),
    ("5. Restore latest", "time", "restore_s", "s"),
    ("5. Restore latest", "peak RSS, with children", "restore_rss_kb", "kB"),
    ("5. Restore latest", "peak RSS, own process", "restore_own_rss_kb", "kB"),
    ("6. No-change backup", "time", "nochange_s", "s"),
    ("6. No-change backup", "bytes added", "nochange_bytes_added", "B"),
]


def fmt(v, kind: str) -> str:
    if v is None:
        return "—"
    if kind == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if kind == "kB":
        return f"{v / 1024:.0f} MiB"
    if kind == "B":
        if abs(v) >= 1e6:
            return f"{v / 1e6:.1f} MB"
        if abs(v) >= 1e3:
            return f"{v / 1e3:.1f} kB"
        return f"{v:.0f} B"
    return str(v)


def medians(result: dict) -> dict:
    """tool -> key -> median over the successful repetitions."""
    med: dict = {}
    for tool in result["tools"]:
        reps = [r[tool] for r in result["reps"] if tool in r and "error" not in r[tool]]
        if reps:
            med[tool] = {k: statistics.median(r[k] for r in reps)
                         for k in reps[0] if isinstance(reps[0][k], (int, float)) and not isinstance(reps[0][k], bool)}
            med[tool]["restore_ok"] = all(r.get("restore_ok") for r in reps)
            med[tool]["n"] = len(reps)
    return med


def ratio(a, b) -> str:
    if a is None or b is None:
        return "—"
    if b == 0:
        return "=" if a == 0 else "∞"
    return f"{a / b:.2f}×"


def section(result: dict) -> str:
    """The markdown section for one size."""
    med = result["medians"]
    refs = [t for t in REFERENCE_TOOLS if t in med]
    tools = refs + (["gitvault"] if "gitvault" in med else [])
    src = result["sources"]["source"]
    lines = [f"## {result['size']} — {result['date']}", ""]
    lines.append(f"Source: generated with `bench/genrepo.py --size {result['size']} --seed {result['seed']}` "
                 f"in {src['seconds']:.0f} s: {src['stats']['commits']:,} commits, {src['stats']['objects']:,} objects, "
                 f"{src['stats']['refs']} refs, {src['stats']['packed_bytes'] / 1e6:.1f} MB packed "
                 f"({src['stats']['apparent_bytes'] / 1e6:.1f} MB on disk with index and bitmap). "
                 f"Medians of {result['reps_requested']} repetition{'s' if result['reps_requested'] != 1 else ''}, fresh vault each.")
    lines.append("")
    head = ["Scenario", "Metric"] + [TOOLS[t].label for t in tools]
    head += [f"gitvault / {TOOLS[t].label}" for t in refs] if "gitvault" in med else []
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for scen, label, key, kind in ROWS:
        if all(med[t].get(key) is None for t in tools):
            continue  # e.g. own-process RSS in a result from before it was measured
        row = [scen, label] + [fmt(med[t].get(key), kind) for t in tools]
        if "gitvault" in med:
            row += [ratio(med["gitvault"].get(key), med[t].get(key)) for t in refs]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    notes = []
    for t in tools:
        if not med[t].get("restore_ok"):
            notes.append(f"**{TOOLS[t].label}: a restored repository did not have the expected refs.**")
        if med[t]["n"] < result["reps_requested"]:
            notes.append(f"{TOOLS[t].label}: only {med[t]['n']} of {result['reps_requested']} repetitions succeeded.")
    for t in result["tools"]:
        if t not in med:
            errs = [r[t]["error"] for r in result["reps"] if t in r and "error" in r[t]]
            first = errs[0].splitlines()[0] if errs else "no repetition ran"
            notes.append(f"**{TOOLS[t].label}: every repetition failed** (first error: `{first}`).")
    for t, why in result["skipped"].items():
        notes.append(f"{TOOLS[t].label} not measured: {why}")
    for n in notes:
        lines.append(f"- {n}")
    if "gitvault" not in med:
        lines.append("- Ratios gitvault / reference appear here once gitvault is measured.")
    if any(k.endswith("_own_rss_kb") for k in med.get("gitvault", {})):
        lines.append("- Peak RSS \"with children\" is `ru_maxrss` of the tool and the processes it waited for "
                     "(for gitvault: the largest of gitvault and its `git` children); \"own process\" is gitvault's "
                     "own peak (VmHWM), which it logs with `-v` (`peak_rss_kib`). When the two differ, a `git` "
                     "child was the largest process.")
    lines.append("")
    if "days" in result:
        lines += days_table(result)
    elif "days_skipped" in result:
        lines += [f"Scenario 4 (daily incrementals) not run: {result['days_skipped']}.", ""]
    lines += targets_table(result)
    m = result["machine"]
    busy = m.get("cpu_busy_at_start")
    other = m.get("foreign_cpu_during_run")
    load_note = "" if busy is None else f", CPUs {busy:.0%} busy just before the run"
    if other is not None:
        load_note += f", {other:.0%} of CPU used by other processes during it"
    if max(busy or 0, other or 0) > BUSY:
        load_note += " (**noisy: rerun on an idle machine**)"
    lines.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']:.0f} GiB RAM, Linux {m['kernel']}, "
                 f"work dir on {m['fs']}{load_note}. Versions: " + "; ".join(f"{v}" for v in result["versions"].values()) + ".")
    lines.append("")
    return "\n".join(lines)


def days_table(result: dict) -> list[str]:
    """Scenario 4: vault sizes after the daily incrementals, per tool."""
    d = result["days"]
    rec = d["tools"]
    ok = [t for t in REFERENCE_TOOLS + ["gitvault"] if t in rec and "error" not in rec[t]]
    refs = [t for t in ok if t != "gitvault"]
    gv = "gitvault" in ok
    sched = d["schedule"][1:]
    gc_idx = [p["day"] for p in sched if p["gc"]]
    other_idx = [p["day"] for p in sched if not p["gc"]]
    commits = sum(p["commits"] for p in sched)
    deleted = sum(1 for p in sched if p.get("deleted"))
    src0, src1 = d["schedule"][0]["source_packed_bytes"], d["source_final"]["packed_bytes"]
    lines = [f"### 4. {d['days']} daily incrementals", "",
             f"One vault per tool, one repetition (a size measurement), {d['seconds']:.0f} s in all. Day 0: a full "
             f"backup; then each day `genrepo.py --add-commits N` (N from 5 to 15, {commits} commits in all; feature "
             f"branches opened and merged ones deleted as genrepo does; {deleted} unmerged branches deleted; a tag every "
             f"10 days) and a backup by every tool of the same live repository; `git gc --prune=now` of the source "
             f"before the backup on days {', '.join(map(str, d['gc_days'])) or '(none: run shorter than 7 days)'}. "
             f"The source grew from {src0 / 1e6:.1f} MB to {src1 / 1e6:.1f} MB packed.", ""]
    head = ["Metric"] + [TOOLS[t].label for t in ok] + ([f"gitvault / {TOOLS[t].label}" for t in refs] if gv else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, kind: str, f) -> None:
        vals = {t: f(rec[t]) for t in ok}
        cells = [label] + [fmt(vals[t], kind) for t in ok]
        if gv:
            cells += [ratio(vals["gitvault"], vals[t]) for t in refs]
        lines.append("| " + " | ".join(cells) + " |")

    def pick(r: dict, key: str, days: list[int]) -> list:
        return [r[key][i] for i in days if i < len(r[key])]

    row(f"vault after {d['days']} days", "B", lambda r: r["vault_bytes"])
    row("day 0: full backup, stored", "B", lambda r: r["day_bytes_added"][0])
    if other_idx:
        row("other days: bytes added, median", "B", lambda r: statistics.median(pick(r, "day_bytes_added", other_idx)))
    if gc_idx:
        row("gc days: bytes added, sum", "B", lambda r: sum(pick(r, "day_bytes_added", gc_idx)))
    if other_idx:
        row("other days: backup time, median", "s", lambda r: statistics.median(pick(r, "day_s", other_idx)))
    if gc_idx:
        row("gc days: backup time, median", "s", lambda r: statistics.median(pick(r, "day_s", gc_idx)))
    row("restore of the last snapshot", "s", lambda r: r.get("restore_s"))
    lines.append("")
    packs = [p.get("day_pack_bytes") for p in d["schedule"]]
    notes = [f"Floor: the `git bundle` column is the sum of the day-0 full bundle and the {d['days']} incremental "
             f"bundles (what a bundle-per-day backup keeps; bundles are thin packs, whose deltas may point into "
             f"earlier bundles); one full bundle of the final repository (`git bundle create --all`) is "
             f"{fmt(d['final_bundle_bytes'], 'B')}"
             + (f"; self-contained packs of each day's new objects (`git pack-objects --revs`, no `--thin`) sum to "
                f"{fmt(sum(packs), 'B')}" if None not in packs else "") + "."]
    if gv:
        notes.append(f"gitvault's vault is {ratio(rec['gitvault']['vault_bytes'], d['final_bundle_bytes'])} "
                     "the final full bundle" + (f" and {ratio(rec['gitvault']['vault_bytes'], rec['bundle']['vault_bytes'])} "
                                                "the sum of the daily bundles" if "bundle" in ok else "") + ".")
    if not d.get("lockstep", True):
        notes.append("The disk could not hold every vault at once: each tool replayed the same days on a fresh copy "
                     "of the source (deterministic churn and gc; refs compared day by day)"
                     + (f"; **the replayed source differed on {', '.join(d['replay_mismatch'])}**"
                        if d.get("replay_mismatch") else ", identical for every tool") + ".")
    bad = [t for t in ok if not rec[t].get("restore_ok")]
    if bad:
        notes.append("**Restored refs differ from the source's after the last day: "
                     + ", ".join(TOOLS[t].label for t in bad) + ".**")
    for t, r in rec.items():
        if "error" in r:
            notes.append(f"**{TOOLS[t].label} failed**: `{r['error'].splitlines()[0][:200]}`")
    lines += [f"- {n}" for n in notes] + [""]
    return lines


def targets(result: dict) -> list[dict]:
    """Issue 6's targets checked against this size's medians: each a dict with the
    target, the limit, what was measured, a verdict (met, missed, reported, —) and,
    when missed, the gap (measured / limit)."""
    med = result["medians"]
    gv = med.get("gitvault")
    size = result["size"]
    small = size == "small"
    rows: list[dict] = []

    def check(target: str, limit: str, measured: str, value, bound: float, strict: bool = False,
              reported: str | None = None) -> None:
        if value is None:
            rows.append({"target": target, "limit": limit, "measured": "not measured", "verdict": "—"})
            return
        ok = value < bound if strict else value <= bound
        verdict = reported or ("met" if ok else "**missed**")
        row = {"target": target, "limit": limit, "measured": measured, "verdict": verdict, "value": value}
        if not ok and not reported:
            row["gap"] = value / bound if bound else float("inf")
        rows.append(row)

    def r(key: str, ref: str):
        if not gv or ref not in med or gv.get(key) is None or not med[ref].get(key):
            return None
        return gv[key] / med[ref][key]

    note = "reported (small: fixed costs dominate)" if small else None
    v = r("full_s", "bundle")
    check("full backup time ≤ 1.5× `git bundle create --all`", "≤ 1.50×",
          f"{v:.2f}× ({fmt(gv['full_s'], 's')} vs {fmt(med['bundle']['full_s'], 's')})" if v else "", v, 1.5,
          reported=note)
    v = r("full_packed_s", "bundle")
    if v is not None:
        within = "within" if v <= 1.5 else "beyond"
        check("the same from a source that is not one pack (git writes the pack)", "≤ 1.50×",
              f"{v:.2f}× ({fmt(gv['full_packed_s'], 's')} vs {fmt(med['bundle']['full_packed_s'], 's')})", v, 1.5,
              reported=note or f"reported ({within} the limit; the issue's repositories are one pack)")
    for t in ("restic", "borg", "rustic"):
        v = r("full_s", t)
        check(f"full backup faster than {t}", "< 1.00×",
              f"{v:.2f}× ({fmt(gv['full_s'], 's')} vs {fmt(med[t]['full_s'], 's')})" if v else "", v, 1.0,
              strict=True, reported=note)
    v = r("full_bytes", "bundle")
    check("stored ≤ 1.05× the bundle", "≤ 1.05×",
          f"{v:.3f}× ({fmt(gv['full_bytes'], 'B')} vs {fmt(med['bundle']['full_bytes'], 'B')})" if v else "", v, 1.05)
    v = r("incr_bytes_added", "bundle")
    check(f"incremental (+{result.get('add_commits', ADD_COMMITS)} commits) ≤ 1.2× its bundle", "≤ 1.20×",
          f"{v:.2f}× ({fmt(gv['incr_bytes_added'], 'B')} vs {fmt(med['bundle']['incr_bytes_added'], 'B')})" if v else "",
          v, 1.2)
    repo = result["sources"]["source"]["stats"]["packed_bytes"]
    v = gv["repack_bytes_added"] / repo if gv else None
    check("after `git repack -adf`: < 1% of the repository added", "< 1%",
          f"{v:.3%} ({fmt(gv['repack_bytes_added'], 'B')} of {fmt(repo, 'B')})" if gv else "", v, 0.01, strict=True)
    d = result.get("days")
    dt_ = d["tools"] if d else {}
    dgv = dt_.get("gitvault") if d and "error" not in dt_.get("gitvault", {"error": 1}) else None
    have_bundle = bool(dgv) and "bundle" in dt_ and "error" not in dt_["bundle"]
    if have_bundle and d["days"]:
        # The incremental target on every day of realistic churn: the worst day.
        days = range(1, d["days"] + 1)
        worst = max(days, key=lambda i: dgv["day_bytes_added"][i] / max(1, dt_["bundle"]["day_bytes_added"][i]))
        v = dgv["day_bytes_added"][worst] / max(1, dt_["bundle"]["day_bytes_added"][worst])
        pk = d["schedule"][worst].get("day_pack_bytes")
        check("incremental ≤ 1.2× its bundle, every day of scenario 4 (worst day)", "≤ 1.20×",
              f"{v:.2f}× (day {worst}: {fmt(dgv['day_bytes_added'][worst], 'B')} vs "
              f"{fmt(dt_['bundle']['day_bytes_added'][worst], 'B')}"
              + (f"; a self-contained pack of that day's objects: {fmt(pk, 'B')}" if pk else "") + ")", v, 1.2)
    if dgv and d["gc_days"] and all(d["schedule"][i].get("day_pack_bytes") for i in d["gc_days"]):
        # On a gc day the source also got that day's commits: what gitvault adds beyond the
        # day's new objects is what the gc cost it. The floor is the smaller of the day's
        # bundle (a thin pack, as gitvault's incrementals are since format version 5) and a
        # self-contained pack of the day's objects.
        def floor(i: int) -> int:
            floors = [d["schedule"][i]["day_pack_bytes"]]
            if have_bundle:
                floors.append(dt_["bundle"]["day_bytes_added"][i])
            return min(floors)

        def extra(i: int) -> int:
            return dgv["day_bytes_added"][i] - floor(i)
        worst = max(d["gc_days"], key=extra)
        size_then = d["schedule"][worst]["source_packed_bytes"]
        v = max(0, extra(worst)) / size_then
        check("after `git gc --prune=now` (scenario 4): < 1% added beyond the day's new objects", "< 1%",
              f"{v:.3%} (worst, day {worst}: {fmt(dgv['day_bytes_added'][worst], 'B')} added, the day's new objects "
              f"{fmt(floor(worst), 'B')} (its bundle or a self-contained pack, the smaller), repository "
              f"{fmt(size_then, 'B')})", v, 0.01, strict=True)
    else:
        check("after `git gc --prune=now` (scenario 4): < 1% added beyond the day's new objects", "< 1%", "", None, 0)
    for t in ("restic", "borg", "rustic"):
        ok = dgv and t in dt_ and "error" not in dt_[t]
        v = dgv["vault_bytes"] / dt_[t]["vault_bytes"] if ok else None
        check(f"{d['days'] if d else DAYS}-day vault ≤ 0.5× {t}'s", "≤ 0.50×",
              f"{v:.2f}× ({fmt(dgv['vault_bytes'], 'B')} vs {fmt(dt_[t]['vault_bytes'], 'B')})" if ok else "", v, 0.5)
    v = r("restore_s", "rustic")
    check("restore at least as fast as rustic's", "≤ 1.00×",
          f"{v:.2f}× ({fmt(gv['restore_s'], 's')} vs {fmt(med['rustic']['restore_s'], 's')})" if v else "", v, 1.0)
    owns = {k: gv[k] for k in ("full_own_rss_kb", "incr_own_rss_kb", "restore_own_rss_kb", "repack_own_rss_kb")
            if gv and gv.get(k) is not None}
    if dgv:
        day_own = [x for x in dgv.get("day_own_rss_kb", []) if x is not None]
        if day_own:
            owns["days_own_rss_kb"] = max(day_own)
    if owns:
        worst = max(owns, key=owns.get)
        tree_keys = ("full_rss_kb", "incr_rss_kb", "restore_rss_kb", "repack_rss_kb")
        tree = max([gv[k] for k in tree_keys if gv.get(k) is not None] + (dgv or {}).get("day_rss_kb", []))
        step = {"full": "full backup", "incr": "incremental", "restore": "restore", "repack": "after repack",
                "days": "daily backups"}[worst.split("_")[0]]
        check("gitvault's own peak memory < 300 MB", "< 300 MB",
              f"{owns[worst] * 1024 / 1e6:.0f} MB ({step}); the largest of it and its git children, "
              f"over every step: {tree * 1024 / 1e6:.0f} MB",
              owns[worst] * 1024, RSS_LIMIT, strict=True)
    else:
        check("gitvault's own peak memory < 300 MB", "< 300 MB", "", None, 0)
    return rows


def targets_table(result: dict) -> list[str]:
    if "gitvault" not in result["medians"]:
        return []
    rows = targets(result)
    lines = [f"### Targets ({result['size']})", "",
             ("Issue 6's targets against the medians above (scenario 4: its single run). "
             + ("On the small repository the time targets are only reported: fixed costs (process start, key "
                "derivation) dominate." if result["size"] == "small" else "")).rstrip(), "",
             "| target | limit | measured | |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['target']} | {row['limit']} | {row['measured']} | {row['verdict']} |")
    missed = [row for row in rows if "gap" in row]
    lines.append("")
    if missed:
        worst = max(missed, key=lambda row: row["gap"])
        lines += [f"Missed {len(missed)} of {sum(1 for row in rows if row['verdict'] in ('met', '**missed**'))} "
                  f"checked; the largest gap: {worst['target']} — {worst['measured']}, "
                  f"{worst['gap']:.2f}× the limit.", ""]
    else:
        lines += ["Every checked target met.", ""]
    return lines


def write_report() -> None:
    """Rebuild BENCHMARKS.md from the newest result file of each size."""
    latest: dict = {}
    storage: dict = {}
    forge: dict = {}
    metadata: dict = {}
    restores: dict = {}
    names = sorted(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else []
    for name in names:
        # Only this runner's files (<date>-<size>.json); storage.py and copy_vault.py write
        # <date>-storage-<size>.json and <date>-copy-<size>.json next to them.
        m = re.fullmatch(r"\d{4}-\d{2}-\d{2}-(small|medium|large)\.json", name)
        if m:
            with open(os.path.join(RESULTS, name)) as f:
                latest[m.group(1)] = json.load(f)  # sorted names: the newest wins
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}-storage-(small|medium|large)(-[0-9a-z]+)?\.json", name):
            with open(os.path.join(RESULTS, name)) as f:
                res = json.load(f)
            link = res.get("link", "loopback (unshaped)")
            if link not in storage or res.get("date", "") > storage[link].get("date", ""):
                storage[link] = res  # the newest run on each kind of link, whatever its size
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}-metadata-\d+\.json", name):
            with open(os.path.join(RESULTS, name)) as f:
                res = json.load(f)
            if res["issues"] not in metadata or res.get("date", "") > metadata[res["issues"]].get("date", ""):
                metadata[res["issues"]] = res
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}-forge-restore-\d+\.json", name):
            with open(os.path.join(RESULTS, name)) as f:
                res = json.load(f)
            if res["issues"] not in restores or res.get("date", "") > restores[res["issues"]].get("date", ""):
                restores[res["issues"]] = res
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}-forge-\d+\.json", name):
            with open(os.path.join(RESULTS, name)) as f:
                res = json.load(f)
            if res["repos"] not in forge or res.get("date", "") > forge[res["repos"]].get("date", ""):
                forge[res["repos"]] = res  # the newest run per organisation size
    order = [s for s in ("small", "medium", "large") if s in latest]
    text = [
        "# Benchmarks", "",
        "Generated by `bench/run.py` (see `bench/README.md`); raw numbers in `bench/results/`. "
        "Do not edit by hand.", "",
        "Each size backs up one generated bare repository. Scenarios (numbered as in issue 6), run in this order "
        "into one fresh vault per repetition: (1) full backup; (6) the same backup again with no change; "
        f"(2) {ADD_COMMITS} new commits, backup; (5) restore the latest snapshot (for git bundle: "
        "`git clone --mirror` of the full bundle plus a fetch of the incremental one); "
        "(3) the source `git repack -adf`'d (no new objects), backup. Before them, for git bundle and gitvault "
        "only, into a vault of its own: (1) again from a copy of the source with one stray loose object "
        "(\"source not one pack\": gitvault cannot store the source's only pack as it is, and git writes a new "
        "one). Then, once per size, (4) thirty daily "
        "incrementals with churn and a `git gc --prune=now` of the source on days 7, 14, 21 and 28, one vault per "
        "tool. (7), the 1,000-repository account, is the \"Forge accounts\" section. "
        "Times are wall-clock medians with a warm page cache; stored bytes are apparent sizes of the vault; "
        "peak RSS is the child's max RSS (like GNU `time -f %M`), and for gitvault also its own process's peak. "
        "`git bundle` is the floor: no encryption, no dedup beyond git's own; its no-change cost is one ref "
        "listing. restic, borg and rustic run with encryption on and their default settings (restic and rustic: "
        "repository v2, compression on; borg: repokey-blake2, lz4).", "",
    ]
    for s in order:
        text.append(section(latest[s]))
    if storage:
        import storage as storage_bench  # noqa: PLC0415  (it imports this module)

        text += ["## Storage backends", "",
                 "Generated by `bench/storage.py`: gitvault into S3 (moto) and over SFTP (OpenSSH) against "
                 "plain clients moving the same bytes to the same servers, and `copy` against `cp`; once on "
                 "the bare loopback, once (`--link`) in a private network namespace whose loopback is shaped "
                 "to a real link's rate.", ""]
        for link, res in sorted(storage.items()):
            text += [f"### {link} — {res.get('date', '')}", "", storage_bench.table(res), ""]
    if forge:
        import forge as forge_bench  # noqa: PLC0415  (it imports this module)

        text += ["## Forge accounts (fake forge)", "",
                 "Generated by `bench/forge.py`: `gitvault backup github:acme` of a generated organisation on the "
                 "local fake forge — the first backup, backups with no change (the \"Forge accounts\" target: under "
                 "30 s for 1,000 repositories on 2 cores, one listing request per page, one ref advertisement per "
                 "repository and wiki, no new data) and with 1% of the repositories changed — beside a plain "
                 "`git ls-remote` of every clone URL.", ""]
        for repos, res in sorted(forge.items(), reverse=True):
            text += [f"### {repos:,} repositories — {res.get('date', '')}", "", forge_bench.table(res), ""]
    if metadata:
        import metadata as metadata_bench  # noqa: PLC0415  (it imports this module)

        text += ["## Forge metadata (fake forge)", "",
                 "Generated by `bench/metadata.py`: the issues, pull requests, comments, reviews and releases of one "
                 "busy GitHub repository — the first backup, one after 10 items changed (the \"Metadata\" target: at "
                 "most 10% of the first backup's charged requests), one with no change.", ""]
        for issues, res in sorted(metadata.items(), reverse=True):
            text += [f"### {issues:,} issues and pull requests", "", metadata_bench.table(res), ""]
    if restores:
        import forge_restore as restore_bench  # noqa: PLC0415  (it imports this module)

        text += ["## Restoring into a forge (fake forge)", "",
                 "Generated by `bench/forge_restore.py`: `gitvault restore --to-forge` of one busy GitHub repository "
                 "from a vault into an empty organisation of the local fake forge (the \"Restore into a forge\" "
                 "target: as many write requests as things to create, the time dominated by the pauses the forge "
                 "asks for), the same restore again, and one under content limits.", ""]
        for issues, res in sorted(restores.items(), reverse=True):
            text += [f"### {issues:,} issues — {res.get('date', '')}", "", restore_bench.table(res), ""]
    with open(REPORT, "w") as f:
        f.write("\n".join(text).rstrip() + "\n")
    print(f"wrote {REPORT}")


def project_commit() -> str | None:
    """The gitvault commit being measured (plus '-dirty'), when there is one."""
    try:
        head = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
        dirty = out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).strip()
        return head + ("-dirty" if dirty else "")
    except subprocess.CalledProcessError:
        return None


def cpu_counters() -> tuple[float, float, float, float]:
    """(busy CPU-seconds of the whole machine, CPU-seconds used by this process
    and its waited-for children, wall clock, CPUs) -- two of these bracket a
    run and tell how much CPU *something else* used meanwhile."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return (sum(v) - v[3] - v[4]) / hz, own, time.monotonic(), len(os.sched_getaffinity(0))


def foreign_cpu(start: tuple, end: tuple) -> float:
    """Share of the machine's CPU used by others (including the kernel's
    writeback for us) between two cpu_counters() readings."""
    busy, own, wall = end[0] - start[0], end[1] - start[1], end[2] - start[2]
    return round(max(0.0, busy - own) / max(1e-9, wall * end[3]), 3)


def cpu_busy(seconds: float = 2.0) -> float:
    """Fraction of all CPUs busy (by anything) over a short sample, from
    /proc/stat; unlike the load average it does not lag behind by minutes."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return round(1 - (i1 - i0) / max(1, t1 - t0), 3)


def machine_info(work: str) -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    fs = out(["stat", "-f", "-c", "%T", work]).strip()
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "ram_gib": mem_kb / 1024 / 1024,
            "kernel": platform.release(), "fs": fs, "python": platform.python_version(),
            "cpu_busy_at_start": cpu_busy()}


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def tool_versions(tools: list[str], skipped: dict) -> dict:
    """Version line of each tool; a tool that cannot report one is moved to
    `skipped` (with the reason) and removed from `tools`."""
    versions = {}
    for t in list(tools):
        try:
            lines = TOOLS[t]("", os.devnull).version().splitlines()
            versions[t] = lines[0].strip() if lines else f"{t} (printed no version)"
        except (ToolError, subprocess.CalledProcessError, FileNotFoundError) as e:
            skipped[t] = f"{e} (run bench/setup.sh)" if t != "gitvault" else str(e)
            tools.remove(t)
    return versions


def describe(size: str, rep: int, reps: int, t: str, r: dict, secs: float) -> str:
    """One progress line per finished chain, so a long run shows signs of life."""
    return (f"[{size}] rep {rep + 1}/{reps} {t:8s} full {r['full_s']:.2f}s {r['full_bytes'] / 1e6:.1f}MB, "
            f"incr {r['incr_s']:.2f}s +{r['incr_bytes_added'] / 1e6:.2f}MB, "
            f"repack +{r['repack_bytes_added'] / 1e6:.2f}MB, restore {r['restore_s']:.2f}s"
            f"{'' if r['restore_ok'] else ' (REFS MISMATCH)'}, no-change {r['nochange_s']:.2f}s  [{secs:.0f}s]")


def bench_size(size: str, args, tools: list[str], skipped: dict) -> dict:
    """Every repetition of every tool on one size; returns the raw result."""
    work = args.workdir
    src, repacked, sources = prepare_sources(work, size, args.seed)
    versions = tool_versions(tools, skipped)
    os.sync()  # let writeback from generation or an earlier size finish before we sample the CPU
    result = {"size": size, "seed": args.seed,
              "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "reps_requested": args.reps, "tools": tools, "skipped": dict(skipped), "versions": versions,
              "machine": machine_info(work), "sources": sources, "project_commit": project_commit(),
              "add_commits": ADD_COMMITS, "reps": []}
    busy = result["machine"]["cpu_busy_at_start"]
    if busy > BUSY:
        print(f"[{size}] warning: the CPUs were {busy:.0%} busy before the run; something else is "
              "running and the times will be noisy", flush=True)
    counters = cpu_counters()
    run_dir = os.path.join(work, "run")
    log = os.path.join(work, f"run-{size}.log")
    open(log, "w").close()
    for rep in range(args.reps):
        # Rotate the order so that no tool always runs first (or right after another).
        order = tools[rep % len(tools):] + tools[:rep % len(tools)] if tools else []
        rec: dict = {}
        for t in order:
            rmtree(run_dir)
            os.makedirs(run_dir)
            tool = TOOLS[t](os.path.join(run_dir, "tool"), log)
            os.makedirs(tool.work)
            os.sync()  # the previous tool's dirty pages are not this tool's cost
            t0 = time.perf_counter()
            try:
                rec[t] = run_chain(tool, src, repacked, args.seed, run_dir)
                print(describe(size, rep, args.reps, t, rec[t], time.perf_counter() - t0), flush=True)
            except ToolError as e:
                rec[t] = {"error": str(e)}
                print(f"[{size}] rep {rep + 1}/{args.reps} {t}: FAILED: {e}", flush=True)
        result["reps"].append(rec)
    if args.days > 0 and tools:
        # All vaults at once if the disk holds them, else one tool at a time.
        src_bytes = sources["source"]["stats"]["apparent_bytes"]
        free = shutil.disk_usage(work).free + apparent_bytes(os.path.join(work, "run"))
        if days_disk_need(src_bytes, tools, args.days) <= free:
            groups = [tools]
        else:
            groups = [[t] for t in tools if days_disk_need(src_bytes, [t], args.days) <= free]
        if not groups:
            result["days_skipped"] = (f"needs up to {days_disk_need(src_bytes, tools[:1], args.days) / 1e9:.1f} GB "
                                      f"of disk per tool, {free / 1e9:.1f} GB free in {work}")
            print(f"[{size}] scenario 4 ({args.days} days) SKIPPED: {result['days_skipped']}", flush=True)
        else:
            print(f"[{size}] scenario 4: {args.days} daily incrementals, one vault per tool"
                  + ("" if len(groups) == 1 else " (one tool at a time: not enough disk for all vaults)"), flush=True)
            result["days"] = run_days(size, src, args, [t for g in groups for t in g], log, groups)
    # A forked child starts with its parent's RSS in ru_maxrss: this is the floor of every
    # "peak RSS, with children" figure (see bench/README.md).
    result["harness_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    other = result["machine"]["foreign_cpu_during_run"] = foreign_cpu(counters, cpu_counters())
    if other > BUSY:
        print(f"[{size}] warning: other processes used {other:.0%} of the CPUs during the run; "
              "times are noisy, rerun on an idle machine", flush=True)
    if not args.keep:
        rmtree(run_dir)
    result["medians"] = medians(result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="medium", help="comma-separated: small,medium,large (default: medium)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per tool (default: 5)")
    ap.add_argument("--seed", type=int, default=1, help="generator seed (default: 1)")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"comma-separated subset of {','.join(ALL_TOOLS)}")
    ap.add_argument("--days", type=int, default=DAYS,
                    help=f"scenario 4: daily incrementals, one repetition (default: {DAYS}; 0 skips it)")
    ap.add_argument("--rustic", default=None,
                    help="rustic binary (default: $GITVAULT_BENCH_TOOLS/bin, ~/.cache/gitvault-bench/bin, "
                         "/work/.bench-tools/bin, then PATH)")
    ap.add_argument("--gitvault", default=os.path.join(ROOT, "target", "release", "gitvault"),
                    help="gitvault binary (default: target/release/gitvault, built with cargo if missing)")
    ap.add_argument("--no-build", action="store_true", help="never run cargo build; skip gitvault if missing")
    ap.add_argument("--workdir", default=os.path.join(BENCH, "work"), help="scratch space (default: bench/work)")
    ap.add_argument("--keep", action="store_true", help="keep the last vault and live copy in WORKDIR/run")
    ap.add_argument("--no-report", action="store_true", help="write the JSON only, not BENCHMARKS.md")
    ap.add_argument("--results", default=RESULTS, help="where the JSON goes (default: bench/results)")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: rebuild BENCHMARKS.md from the newest results in bench/results")
    args = ap.parse_args()
    if args.report_only:
        write_report()
        return
    args.workdir = os.path.abspath(args.workdir)
    os.makedirs(args.workdir, exist_ok=True)

    # Never two benchmarks at once on the same machine: they would skew each other.
    lock = open(os.path.join(args.workdir, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"another bench/run.py is running (lock {lock.name})")

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        sys.exit(f"unknown tool(s): {', '.join(bad)}")
    skipped: dict = {}
    Rustic.binary = os.path.abspath(args.rustic) if args.rustic else find_rustic()
    if "gitvault" in tools:
        why = ensure_gitvault(os.path.abspath(args.gitvault), build=not args.no_build)
        if why:
            print(f"gitvault: SKIPPED: {why}", flush=True)
            skipped["gitvault"] = why
            tools.remove("gitvault")
    os.makedirs(args.results, exist_ok=True)
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        result = bench_size(size, args, list(tools), dict(skipped))
        path = os.path.join(args.results, f"{dt.datetime.now(dt.timezone.utc).date().isoformat()}-{size}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {path}")
        print(section(result))
    if not args.no_report:
        write_report()


if __name__ == "__main__":
    main()
