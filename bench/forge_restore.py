#!/usr/bin/env python3
"""Benchmark `gitvault restore --to-forge` of one busy GitHub repository into the fake forge.

Why: issue 8's performance target. Restoring a repository with 1,000 issues and 5,000 comments:
the number of write requests equals the number of things to create (plus uploads), no more; the
elapsed time is dominated by the pauses the forge asks for, which are reported.

What it does, in one run: the fake forge's generator makes `acme/api` (--issues issues, no pull
requests, --comments comments, its labels, milestones and releases); `gitvault backup` stores it
in a fresh vault; then, --reps times into a new organisation each:
  1. `restore --to-forge github:orgN` with no limit from the forge (the cost of the writes);
  2. the same again into the same organisation: nothing to create, so no write;
  3. `restore --to-forge github:limitedN` with GitHub-like content limits (after every --limit-after
     writes the forge answers 403 + Retry-After: --limit-wait seconds), where the pauses dominate.
Each: wall time, writes and reads from gitvault's report and from the fake's request log, the
things created, the pauses. Medians.

Output: a markdown table on stdout, bench/results/<date>-forge-restore-<issues>.json and, unless
--no-report, BENCHMARKS.md (through run.py's write_report).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metadata as meta  # noqa: E402

ROOT = meta.ROOT
TOKEN = meta.TOKEN
PASSWORD = meta.PASSWORD


def restore(exe: str, vault: str, cache: str, api: str, target: str) -> dict:
    env = dict(os.environ, GITVAULT_PASSWORD=PASSWORD, GITVAULT_CACHE_DIR=cache, GITHUB_TOKEN=TOKEN)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([exe, "restore", "latest", "--vault", vault, "--to-forge", target, "--api-url", api,
                          "--json"], env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"gitvault restore --to-forge failed ({out.returncode}):\n{out.stderr}\n{out.stdout[-2000:]}")
    r = json.loads(out.stdout)["repositories"][0]
    created = sum(c["created"] for c in r["counts"].values())
    return {
        "s": round(secs, 2),
        # gitvault's own CPU, and git's for the push: what the restore costs on this side.
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        "writes": r["writes"],
        "reads": r["reads"],
        "created": created,
        "counts": {k: v["created"] for k, v in r["counts"].items() if v["created"]},
        "forge_pauses_s": round(r["forge_pauses_seconds"], 1),
        "failures": len(r["failures"]),
    }


def logged_writes(root: str, offset: int) -> tuple[dict, int]:
    log, offset = meta.requests_since(root, offset)
    writes = [x for x in log if x.get("write") and x.get("kind") == "api"]
    return {"log_writes": len(writes), "log_refused": sum(1 for x in writes if x.get("status") in (403, 429))}, offset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--issues", type=int, default=1000)
    ap.add_argument("--comments", type=int, default=5000)
    ap.add_argument("--limit-after", type=int, default=500, help="writes between two content limits")
    ap.add_argument("--limit-wait", type=int, default=10, help="the Retry-After of a content limit, seconds")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gitvault")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--no-report", action="store_true", help="leave BENCHMARKS.md alone")
    a = ap.parse_args()
    exe = meta.gitvault_binary(a.gitvault, not a.no_build)
    work = tempfile.mkdtemp(prefix="gv-forge-restore-bench-")
    root = os.path.join(work, "forge")
    os.makedirs(os.path.join(root, "git", "github", "acme"))
    src = os.path.join(work, "src")
    subprocess.run(["git", "init", "-q", "-b", "main", src], check=True)
    with open(os.path.join(src, "README"), "w") as f:
        f.write("api\n")
    subprocess.run(["git", "-C", src, "add", "README"], check=True)
    subprocess.run(["git", "-C", src, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", src, os.path.join(root, "git", "github", "acme", "api.git")],
                   check=True)
    generate = {"issues": a.issues, "pulls": 0, "comments": a.comments, "seed": 1}
    orgs = {"acme": {"type": "Organization"}}
    for rep in range(a.reps):
        orgs[f"org{rep}"] = {"type": "Organization"}
        orgs[f"limited{rep}"] = {"type": "Organization"}
    world = {"tokens": {TOKEN: {"login": "alice"}},
             "github": {"accounts": orgs,
                        "repos": [{"owner": "acme", "name": "api", "private": True, "has_wiki": False,
                                   "generate": generate}]}}
    meta.write_world(root, world)
    proc, port = meta.start_forge(root)
    api = f"http://127.0.0.1:{port}/github/api/v3"
    vault = os.path.join(work, "vault")
    cache = os.path.join(work, "cache")
    env = dict(os.environ, GITVAULT_PASSWORD=PASSWORD)
    reps = []
    try:
        subprocess.run([exe, "init", "--vault", vault], env=env, check=True, capture_output=True)
        meta.run_backup(exe, vault, cache, api)
        _, offset = meta.requests_since(root, 0)
        for rep in range(a.reps):
            first = restore(exe, vault, cache, api, f"github:org{rep}")
            extra, offset = logged_writes(root, offset)
            first.update(extra)
            again = restore(exe, vault, cache, api, f"github:org{rep}")
            extra, offset = logged_writes(root, offset)
            again.update(extra)
            limited_world = json.loads(json.dumps(world))
            limited_world["faults"] = {"github": {"writes": {"after": a.limit_after, "retry_after": a.limit_wait,
                                                             "times": -1}}}
            meta.write_world(root, limited_world)
            limited = restore(exe, vault, cache, api, f"github:limited{rep}")
            extra, offset = logged_writes(root, offset)
            limited.update(extra)
            meta.write_world(root, world)
            reps.append({"first": first, "again": again, "limited": limited})
            print(f"rep {rep + 1}: {first['writes']} writes for {first['created']} things in {first['s']} s; "
                  f"again {again['writes']} writes in {again['s']} s; with limits {limited['s']} s "
                  f"({limited['forge_pauses_s']} s paused)", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()

    def med(step: str, key: str) -> float:
        return statistics.median(r[step][key] for r in reps)

    result = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "issues": a.issues, "comments": a.comments, "limit_after": a.limit_after, "limit_wait": a.limit_wait,
        "reps": reps,
        "medians": {s: {k: med(s, k) for k in ("s", "cpu_s", "writes", "reads", "created", "forge_pauses_s", "log_writes",
                                                "log_refused")}
                    for s in ("first", "again", "limited")},
        "nproc": os.cpu_count(),
    }
    os.makedirs(a.results, exist_ok=True)
    out = os.path.join(a.results, f"{dt.date.today()}-forge-restore-{a.issues}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(table(result))
    print(f"\nresults: {out}")
    shutil.rmtree(work, ignore_errors=True)
    if not a.no_report:
        import run as bench  # noqa: PLC0415

        bench.write_report()


def table(result: dict) -> str:
    m = result["medians"]
    counts = result["reps"][0]["first"]["counts"]
    lines = [
        f"One GitHub repository with {result['issues']} issues and {result['comments']} comments (and the "
        f"generator's labels, milestones and releases) restored from a vault into an empty organisation of the fake "
        f"forge on 127.0.0.1; {result.get('nproc')} CPUs; medians of {len(result['reps'])}. Created in the first run: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".", "",
        "| run | time | gitvault CPU | things created | write requests (gitvault) | writes the forge saw | refused by a limit | reads | paused for the forge |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step, label in (("first", "into an empty organisation"), ("again", "the same again (nothing to do)"),
                        ("limited", f"with content limits ({result['limit_wait']} s every {result['limit_after']} writes)")):
        s = m[step]
        lines.append(f"| {label} | {s['s']:.1f} s | {s.get('cpu_s', 0):.1f} s | {s['created']:.0f} | {s['writes']:.0f} | {s['log_writes']:.0f} | "
                     f"{s['log_refused']:.0f} | {s['reads']:.0f} | {s['forge_pauses_s']:.0f} s |")
    first = m["first"]
    verdict = "met" if first["writes"] == first["created"] else "**missed**"
    share = m["limited"]["forge_pauses_s"] / m["limited"]["s"] if m["limited"]["s"] else 0
    lines += ["", f"Write requests = things created: {verdict} ({first['writes']:.0f} = {first['created']:.0f}; the "
              "forge's own count includes the refused writes that were retried). With content limits, the pauses the "
              f"forge asked for are {share:.0%} of the elapsed time; the rest is the fake forge's own time per write "
              "(it rebuilds a repository's model on every write, so it slows as the repository grows); gitvault's "
              f"own CPU is {first.get('cpu_s', 0):.1f} s for the whole run, unlock and push included "
              f"({1000 * first.get('cpu_s', 0) / max(1, first['writes']):.2f} ms a write). GitHub itself allows about "
              "80 content-creating requests a minute: there, the pauses are nearly all of it. The date: "
              + result["date"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
