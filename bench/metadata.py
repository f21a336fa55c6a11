#!/usr/bin/env python3
"""Benchmark the metadata backup of one busy GitHub repository on the fake forge.

Why: the "Metadata" performance target. For a repository with 5,000 issues and 20,000 comments
on the fake forge: the first backup makes about as many requests as the pages required at the
maximum page size (plus per-PR review requests); the second, with 10 items changed, spends at
most 10% of the first backup's rate-limited requests (304s are free); memory stays bounded.

What it does, in one run: the fake forge's generator makes the repository (5,000 issues of which
--pulls are pull requests, --comments comments, a review and two review comments per pull); then
`gitvault backup --json github:acme` into a fresh vault (first), `touch` --changed items (their
`updated_at` moves and a comment is edited), the backup again (changed), and once more with no
change (nochange). Each step: wall time, gitvault's peak RSS and CPU, API requests split into
charged (200s) and 304s from gitvault's own report and from the fake's request log, and the
pages the listings need at 100 per page (the floor). Repeated --reps times on fresh vaults;
medians.

Output: a markdown table on stdout, bench/results/<date>-metadata-<issues>.json and, unless
--no-report, BENCHMARKS.md (through run.py's write_report, from the newest result).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = os.path.join(ROOT, "crates", "gitvault-forge", "fakeforge", "fakeforge.py")
TOKEN = "ghp_bench_metadata_token"
PASSWORD = "bench passphrase"


def gitvault_binary(path: str | None, build: bool) -> str:
    exe = path or os.path.join(ROOT, "target", "release", "gitvault")
    if not os.path.exists(exe) and build:
        subprocess.run(["cargo", "build", "--release", "-p", "gitvault"], cwd=ROOT, check=True)
    if not os.path.exists(exe):
        sys.exit(f"no gitvault binary at {exe} (build it, or drop --no-build)")
    return exe


def start_forge(root: str) -> tuple[subprocess.Popen, int]:
    log = open(os.path.join(root, "server.out"), "wb")
    proc = subprocess.Popen([sys.executable, "-B", FAKE, "--root", root], stdout=log, stderr=subprocess.STDOUT)
    port_file = os.path.join(root, "port")
    deadline = time.time() + 30
    while not os.path.exists(port_file):
        if time.time() > deadline or proc.poll() is not None:
            sys.exit("the fake forge did not start: " + open(os.path.join(root, "server.out")).read())
        time.sleep(0.05)
    return proc, int(open(port_file).read())


def write_world(root: str, world: dict) -> None:
    tmp = os.path.join(root, "world.json.tmp")
    with open(tmp, "w") as f:
        json.dump(world, f)
    os.replace(tmp, os.path.join(root, "world.json"))


def requests_since(root: str, offset: int) -> tuple[list[dict], int]:
    path = os.path.join(root, "requests.jsonl")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    lines = [json.loads(x) for x in data.splitlines() if x.strip()]
    return lines, offset + len(data)


def run_backup(exe: str, vault: str, cache: str, api: str) -> dict:
    env = dict(os.environ, GITVAULT_PASSWORD=PASSWORD, GITVAULT_CACHE_DIR=cache, GITHUB_TOKEN=TOKEN)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([exe, "backup", "--json", "--vault", vault, "--api-url", api, "github:acme"],
                         env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"gitvault backup failed ({out.returncode}):\n{out.stderr}")
    report = json.loads(out.stdout)
    meta = report["metadata"][0]
    return {
        "s": round(secs, 3),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3),
        "rss_kb": after.ru_maxrss,
        "requests": meta["requests"],
        "not_modified": meta["not_modified"],
        "charged": meta["requests"] - meta["not_modified"],
        "issues": meta["issues"],
        "pulls": meta["pulls"],
        "comments": meta["comments"],
        "changed": meta["changed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--issues", type=int, default=5000, help="issues and pull requests together")
    ap.add_argument("--pulls", type=int, default=500)
    ap.add_argument("--comments", type=int, default=20000)
    ap.add_argument("--changed", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gitvault")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--no-report", action="store_true", help="leave BENCHMARKS.md alone")
    a = ap.parse_args()
    exe = gitvault_binary(a.gitvault, not a.no_build)
    work = tempfile.mkdtemp(prefix="gv-metadata-bench-")
    root = os.path.join(work, "forge")
    os.makedirs(os.path.join(root, "git", "github", "acme"))
    # The code repository itself is small: one commit.
    src = os.path.join(work, "src")
    subprocess.run(["git", "init", "-q", src], check=True)
    with open(os.path.join(src, "README"), "w") as f:
        f.write("api\n")
    subprocess.run(["git", "-C", src, "add", "README"], check=True)
    subprocess.run(["git", "-C", src, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", src, os.path.join(root, "git", "github", "acme", "api.git")],
                   check=True)
    generate = {"issues": a.issues - a.pulls, "pulls": a.pulls, "comments": a.comments, "seed": 1}
    world = {"tokens": {TOKEN: {"login": "alice"}},
             "github": {"accounts": {"acme": {"type": "Organization"}},
                        "repos": [{"owner": "acme", "name": "api", "private": True, "has_wiki": False,
                                   "generate": generate}]}}
    write_world(root, world)
    proc, port = start_forge(root)
    api = f"http://127.0.0.1:{port}/github/api/v3"
    # The floor: pages of 100 of every listing the first backup must read in full.
    pages = {
        "issues (with pulls)": math.ceil((a.issues + 1) / 100),
        "issue comments": math.ceil((a.comments + 1) / 100),
        "pulls": math.ceil((a.pulls + 1) / 100),
        "review comments": math.ceil((2 * a.pulls + 1) / 100),
        "reviews (one request per pull)": a.pulls,
    }
    reps = []
    offset = 0
    try:
        for rep in range(a.reps):
            write_world(root, world)
            vault = os.path.join(work, f"vault-{rep}")
            cache = os.path.join(work, f"cache-{rep}")
            env = dict(os.environ, GITVAULT_PASSWORD=PASSWORD)
            subprocess.run([exe, "init", "--vault", vault], env=env, check=True, capture_output=True)
            first = run_backup(exe, vault, cache, api)
            _, offset = requests_since(root, offset)
            touched = list(range(1, a.issues + 1, max(1, a.issues // a.changed)))[: a.changed]
            changed_world = json.loads(json.dumps(world))
            changed_world["github"]["repos"][0]["generate"]["touch"] = touched
            changed_world["github"]["repos"][0]["generate"]["touched_at"] = f"2030-01-0{rep + 1}T00:00:00Z"
            write_world(root, changed_world)
            changed = run_backup(exe, vault, cache, api)
            log, offset = requests_since(root, offset)
            changed["log_charged"] = sum(1 for r in log if r.get("kind") == "api" and r.get("status") != 304)
            nochange = run_backup(exe, vault, cache, api)
            log, offset = requests_since(root, offset)
            nochange["log_charged"] = sum(1 for r in log if r.get("kind") == "api" and r.get("status") != 304)
            reps.append({"first": first, "changed": changed, "nochange": nochange, "touched": touched})
            print(f"rep {rep + 1}: first {first['s']} s, {first['charged']} charged requests; "
                  f"{a.changed} changed: {changed['s']} s, {changed['charged']} charged; "
                  f"no change: {nochange['s']} s, {nochange['charged']} charged", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()

    def med(step: str, key: str) -> float:
        return statistics.median(r[step][key] for r in reps)

    first_charged = med("first", "charged")
    changed_charged = med("changed", "charged")
    ratio = changed_charged / first_charged if first_charged else 0.0
    floor = sum(pages.values())
    result = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "issues": a.issues, "pulls": a.pulls, "comments": a.comments, "changed_items": a.changed,
        "pages_floor": pages, "reps": reps,
        "medians": {s: {k: med(s, k) for k in ("s", "cpu_s", "rss_kb", "requests", "not_modified", "charged")}
                    for s in ("first", "changed", "nochange")},
        "ratio_changed_to_first": round(ratio, 4),
        "nproc": os.cpu_count(),
    }
    os.makedirs(a.results, exist_ok=True)
    out = os.path.join(a.results, f"{dt.date.today()}-metadata-{a.issues}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(table(result))
    print(f"\nresults: {out}")
    shutil.rmtree(work, ignore_errors=True)
    if not a.no_report:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import run as bench  # noqa: PLC0415

        bench.write_report()


def table(result: dict) -> str:
    """The markdown of one result, for stdout and BENCHMARKS.md."""
    m = result["medians"]
    reps = len(result["reps"])
    lines = [
        f"One GitHub repository with {result['issues']} issues and pull requests ({result['pulls']} pull requests), "
        f"{result['comments']} comments, a review and two review comments per pull, generated by the fake forge on "
        f"127.0.0.1; {result.get('nproc')} CPUs; medians of {reps}. Charged requests are those the rate limit counts "
        "(GitHub does not count a 304).", "",
        "| step | time | gitvault CPU | peak RSS | API requests | of which 304 (free) | charged |",
        "|---|---|---|---|---|---|---|",
    ]
    for step, label in (("first", "first backup"), ("changed", f"{result['changed_items']} items changed"),
                        ("nochange", "no change")):
        lines.append(f"| {label} | {m[step]['s']:.1f} s | {m[step]['cpu_s']:.1f} s | {m[step]['rss_kb'] / 1024:.0f} MiB | "
                     f"{m[step]['requests']:.0f} | {m[step]['not_modified']:.0f} | {m[step]['charged']:.0f} |")
    pages = result["pages_floor"]
    floor = sum(pages.values())
    ratio = result["ratio_changed_to_first"]
    verdict = "met" if ratio <= 0.10 else "**missed**"
    lines += ["", f"Floor for the first backup: {floor} requests ({', '.join(f'{k} {v}' for k, v in pages.items())}). "
              f"Changed run / first run, charged requests: {ratio:.1%} (target <= 10%: {verdict}). Peak RSS includes "
              "the 128 MiB Argon2id unlock; the date: " + result.get("date", "")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
