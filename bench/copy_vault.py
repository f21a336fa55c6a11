#!/usr/bin/env python3
"""Benchmark `gitvault copy` (vault to vault, local to local) against copying the vault's files.

Why: a copy decrypts every object from the source vault and seals it again under the
destination's key, so it cannot be as cheap as copying bytes. This measures how far from the
floor it is: `cp -r` of the vault directory (plus `sync`, since gitvault makes every object
durable before it is visible), and for the incremental step `cp -rn` (copy only new files).

Per repetition, on the generated repository of run.py (same generator, same cache):
  setup (not timed): vault A with a full backup of the source;
  1. full copy:        `gitvault copy` into a fresh vault B     vs  `cp -r A` + `sync`
  2. no-change copy:   `gitvault copy` again                     (nothing to send)
  3. incremental copy: +20 commits, backup into A, `gitvault copy` vs `cp -rn A` + `sync`
  4. full copy into a replica R made with `init --keys-from A` (it holds A's keys: the data
     objects move as they are, each chunk's authentication tag checked on the way, not sealed
     again)

Output: the medians on stdout (a markdown table) and every repetition in
bench/results/<date>-copy-<size>.json. BENCHMARKS.md is not touched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the main runner: measuring, sources, gitvault build)


def gv(binary: str, work: str, log: str, args: list[str]) -> bench.Measure:
    env = {"GITVAULT_PASSWORD": bench.PASSWORD, "GITVAULT_CACHE_DIR": os.path.join(work, "cache")}
    return bench.measure([binary, *args], env=env, log=log)[0]


def copy_files(cmd: list[str], log: str) -> bench.Measure:
    m = bench.measure(cmd, log=log)[0]
    return m + bench.measure(["sync"], log=log)[0]


def settle(vault: str) -> None:
    """Before a timed step: every earlier write on disk and, where allowed (root), the page
    cache emptied, then the source vault read into it again. Each step then starts from the
    same memory state instead of reclaiming the gigabytes the steps before it wrote."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError:
        pass
    bench.warm(vault)


def one_rep(binary: str, src: str, seed: int, work: str, log: str) -> dict:
    bench.rmtree(work)
    os.makedirs(work)
    a, b, raw, replica = (os.path.join(work, n) for n in ("a", "b", "raw", "replica"))
    live = os.path.join(work, "live.git")
    bench.copy_repo(src, live)
    for v in (a, b):
        gv(binary, work, log, ["init", "--vault", v])
    gv(binary, work, log, ["init", "--vault", replica, "--keys-from", a])
    gv(binary, work, log, ["backup", "--vault", a, live])
    r: dict = {"vault_bytes": bench.apparent_bytes(a)}
    settle(a)
    r["copy_full_s"] = gv(binary, work, log, ["copy", "--from", a, "--to", b]).seconds
    r["copy_full_bytes"] = bench.apparent_bytes(b)
    settle(a)
    r["cp_full_s"] = copy_files(["cp", "-r", a, raw], log).seconds
    r["copy_nochange_s"] = gv(binary, work, log, ["copy", "--from", a, "--to", b]).seconds
    settle(a)
    r["copy_replica_s"] = gv(binary, work, log, ["copy", "--from", a, "--to", replica]).seconds
    bench.rmtree(replica)

    subprocess.run([sys.executable, bench.GENREPO, "--add-commits", str(bench.ADD_COMMITS), "--seed", str(seed),
                    live], check=True, stdout=subprocess.DEVNULL)
    gv(binary, work, log, ["backup", "--vault", a, live])
    os.sync()
    before = bench.apparent_bytes(b)
    bench.warm(a)
    r["copy_incr_s"] = gv(binary, work, log, ["copy", "--from", a, "--to", b]).seconds
    r["copy_incr_bytes_added"] = bench.apparent_bytes(b) - before
    bench.warm(a)
    r["cp_incr_s"] = copy_files(["cp", "-rn", os.path.join(a, "."), raw], log).seconds
    # The copy must restore what the source vault restores.
    for v, name in ((a, "a"), (b, "b")):
        target = os.path.join(work, f"restore-{name}.git")
        gv(binary, work, log, ["restore", "--vault", v, "latest", "--target", target])
        r[f"refs_{name}"] = bench.refs_of(target)
    r["restore_same"] = r.pop("refs_a") == r.pop("refs_b")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="medium", help="small, medium or large (default: medium)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default: 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gitvault", default=os.path.join(bench.ROOT, "target", "release", "gitvault"))
    ap.add_argument("--no-build", action="store_true", help="never run cargo build")
    ap.add_argument("--workdir", default=os.path.join(bench.BENCH, "work"))
    args = ap.parse_args()
    binary = os.path.abspath(args.gitvault)
    why = bench.ensure_gitvault(binary, build=not args.no_build)
    if why:
        sys.exit(f"gitvault: {why}")
    work = os.path.abspath(args.workdir)
    src, _, sources = bench.prepare_sources(work, args.size, args.seed)
    log = os.path.join(work, f"copy-{args.size}.log")
    open(log, "w").close()
    busy = bench.cpu_busy()
    reps = []
    for i in range(args.reps):
        reps.append(one_rep(binary, src, args.seed, os.path.join(work, "copy-run"), log))
        print(f"[copy {args.size}] rep {i + 1}/{args.reps}: {reps[-1]}", flush=True)
    bench.rmtree(os.path.join(work, "copy-run"))
    med = {k: statistics.median(r[k] for r in reps) for k in reps[0] if k != "restore_same"}
    result = {"size": args.size, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "gitvault": binary, "cpu_busy_at_start": busy, "source": sources["source"],
              "project_commit": bench.project_commit(), "reps": reps, "medians": med}
    os.makedirs(bench.RESULTS, exist_ok=True)
    path = os.path.join(bench.RESULTS, f"{dt.date.today().isoformat()}-copy-{args.size}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")
    if busy > bench.BUSY:
        print(f"warning: the CPUs were {busy:.0%} busy before the run; times are noisy")
    mib = med["vault_bytes"] / 2**20
    print(f"\nvault of {mib:.1f} MiB ({args.size}), medians of {args.reps}, restores identical: "
          f"{all(r['restore_same'] for r in reps)}\n")
    print("| step | gitvault copy | files copied | ratio |\n|---|---|---|---|")
    print(f"| full | {med['copy_full_s']:.2f} s | {med['cp_full_s']:.2f} s (`cp -r` + `sync`) | "
          f"{med['copy_full_s'] / med['cp_full_s']:.2f}× |")
    print(f"| +{bench.ADD_COMMITS} commits | {med['copy_incr_s']:.2f} s "
          f"(+{med['copy_incr_bytes_added'] / 1024:.0f} KiB) | {med['cp_incr_s']:.2f} s (`cp -rn` + `sync`) | "
          f"{med['copy_incr_s'] / med['cp_incr_s']:.2f}× |")
    print(f"| nothing new | {med['copy_nochange_s']:.2f} s | — | — |")
    print(f"| full, into a replica holding A's keys (`init --keys-from`) | {med['copy_replica_s']:.2f} s | "
          f"{med['cp_full_s']:.2f} s (`cp -r` + `sync`) | {med['copy_replica_s'] / med['cp_full_s']:.2f}× |")


if __name__ == "__main__":
    main()
