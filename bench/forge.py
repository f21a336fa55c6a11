#!/usr/bin/env python3
"""Benchmark backing up a whole forge organisation with no change, against the fake forge.

Why: the "Forge accounts" performance target. For an organisation of 1,000 small repositories on
the local fake forge, with no change since the last backup, the whole run takes under 30 seconds
on 2 cores, makes at most one listing request per page plus one ref advertisement per repository
and per existing wiki, and stores no new data except the snapshot. The "Benchmarks" issue adds
the same account with 1% of its repositories changed.

What it does, in one run:
  * generates N small bare repositories for the organisation `acme` (2-10 commits, a few text
    files, tags, sometimes a second branch; ~2% with a wiki repository, ~20% private), with
    `git fast-import`, deterministically from --seed; cached in bench/work/forge-<N>-<seed>/;
  * copies them under a fresh fake forge root, writes its world.json with one token, starts
    `crates/gitvault-forge/fakeforge/fakeforge.py` on a free port of 127.0.0.1;
  * per --jobs value, into a fresh vault and a fresh mirror cache:
      first    `gitvault backup --json --jobs J github:acme` of everything      (one run)
      nochange the same again, nothing changed                                (--reps runs)
      changed  1% of the repositories get one new commit (fast-import straight into the bare
               repositories, a different 1% each time), then a backup        (--reps runs)
    and, side by side with each no-change run, the floor for "one ref advertisement per
    repository": `git ls-remote` of every clone URL (and wiki URL), one after another, with the
    same authorization header; and the same with J at a time;
  * after the timed runs, one no-change run with a `git` wrapper first on PATH that logs
    every git command gitvault starts (not timed against anything; its time is shown apart).

Each step records wall time, gitvault's peak RSS (ru_maxrss from wait4: the largest of gitvault
and the git processes it waited for), gitvault's CPU (its own and its git children's), the fake
forge's CPU (the Python server and the `git http-backend`/`upload-pack` processes it reaped),
the processes forked on the whole machine (/proc/stat), the requests from the fake forge's
request log (API requests by path; git requests: GET info/refs, POST ls-refs, POST fetch), a
timeline from that log (start to first request, listing, repositories, last request to exit),
and what the vault gained (bytes, new files by directory; new files under data/).

Output: bench/results/<date>-forge-<N>.json and, unless --no-report, BENCHMARKS.md through
run.py's write_report() (a "Forge accounts (fake forge)" section per N from the newest result).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime as dt
import fcntl
import glob
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (measuring helpers, machine info, gitvault build, report)
import storage  # noqa: E402  (Server, free_port, process_cpu)

FAKEFORGE = os.path.join(bench.ROOT, "crates", "gitvault-forge", "fakeforge", "fakeforge.py")
ORG = "acme"
TOKEN = "ghp_benchTokenNotSecret0123456789abcdef"
PAGE = 100  # per_page gitvault asks for; the listing is ceil(N / PAGE) pages
TARGET_S = 30.0
CHANGED_SHARE = 0.01
# Bump when the generated repositories change, so that caches are rebuilt. (2: no hook samples,
# as on a forge; same objects and refs as 1.)
GENERATOR_VERSION = 2

WORDS = ["api", "web", "auth", "billing", "search", "infra", "docs", "mobile", "data", "ml", "ops", "sdk",
         "cli", "gateway", "cache", "queue", "etl", "ui", "admin", "metrics", "mail", "chat", "maps", "pay"]
KINDS = ["service", "lib", "tool", "app", "worker", "config", "site", "plugin", "bot", "proxy"]
LANGS = [("py", "def {f}(x):\n    return x + {n}\n"), ("rs", "pub fn {f}(x: u32) -> u32 {{\n    x + {n}\n}}\n"),
         ("go", "func {f}(x int) int {{\n\treturn x + {n}\n}}\n"), ("js", "export function {f}(x) {{\n  return x + {n};\n}}\n"),
         ("rb", "def {f}(x)\n  x + {n}\nend\n")]
VERBS = ["add", "fix", "update", "refactor", "document", "tune", "rename", "remove", "test", "bump"]


# ---------------------------------------------------------------------------
# The organisation: generated bare repositories
# ---------------------------------------------------------------------------


def rng_for(seed: int, *parts) -> random.Random:
    return random.Random(f"{seed}:" + ":".join(str(p) for p in parts))


def people(rng: random.Random) -> str:
    first = rng.choice(["Ada", "Linus", "Grace", "Ken", "Barbara", "Dennis", "Margaret", "Guido", "Frances"])
    return f"{first} Dev <{first.lower()}@acme.example>"


class Stream:
    """A `git fast-import` stream under construction."""

    def __init__(self, t0: int):
        self.parts: list[bytes] = []
        self.t = t0
        self.mark = 0

    def data(self, text: str) -> None:
        raw = text.encode()
        self.parts.append(b"data %d\n%s\n" % (len(raw), raw))

    def commit(self, ref: str, who: str, msg: str, parent: str | None, files: dict[str, str]) -> str:
        self.mark += 1
        self.t += 3600 * 7 + self.mark * 131
        self.parts.append(f"commit {ref}\nmark :{self.mark}\nauthor {who} {self.t} +0000\n"
                          f"committer {who} {self.t} +0000\n".encode())
        self.data(msg)
        if parent:
            self.parts.append(f"from {parent}\n".encode())
        for path, text in sorted(files.items()):
            self.parts.append(f"M 100644 inline {path}\n".encode())
            self.data(text)
        return f":{self.mark}"

    def tag(self, name: str, target: str, who: str | None = None, msg: str = "") -> None:
        if who is None:  # lightweight
            self.parts.append(f"reset refs/tags/{name}\nfrom {target}\n\n".encode())
        else:
            self.parts.append(f"tag {name}\nfrom {target}\ntagger {who} {self.t} +0000\n".encode())
            self.data(msg)

    def bytes(self) -> bytes:
        return b"".join(self.parts) + b"done\n"


def repo_stream(seed: int, index: int, name: str) -> bytes:
    """A small project: 2-10 commits on main, 2-5 source files, a README, tags, sometimes a
    second branch. Distinct content per repository (its name and index are in every file)."""
    rng = rng_for(seed, "repo", index)
    ext, template = rng.choice(LANGS)
    s = Stream(1_600_000_000 + index * 86_400)
    files = {"README.md": f"# {name}\n\nThe {name} project of acme (#{index}).\n",
             ".gitignore": "/target\n*.log\n"}
    for k in range(rng.randint(2, 5)):
        body = "".join(template.format(f=f"{rng.choice(VERBS)}_{k}_{j}", n=rng.randint(1, 999)) for j in range(rng.randint(1, 4)))
        files[f"src/{name.split('-')[0]}_{k}.{ext}"] = f"// {name} module {k}\n" + body
    tip = s.commit("refs/heads/main", people(rng), f"Initial import of {name}\n", None, files)
    commits = [tip]
    for c in range(rng.randint(1, 9)):
        path = rng.choice(sorted(files))
        files[path] = files[path] + template.format(f=f"{rng.choice(VERBS)}_{c}", n=rng.randint(1, 9999))
        change = {path: files[path]}
        if rng.random() < 0.3:
            new = f"docs/{rng.choice(VERBS)}-{c}.md"
            files[new] = change[new] = f"Notes on {name}, change {c}: {rng.random():.6f}\n"
        tip = s.commit("refs/heads/main", people(rng), f"{rng.choice(VERBS).capitalize()} {path} ({name} #{c})\n",
                       tip, change)
        commits.append(tip)
    s.tag("v0.1.0", commits[len(commits) // 2])
    if rng.random() < 0.5:
        s.tag("v1.0.0", tip, people(rng), f"{name} 1.0.0\n")
    if rng.random() < 0.3:
        base = rng.choice(commits)
        s.commit("refs/heads/develop", people(rng), f"WIP on {name}\n", base,
                 {"WIP.md": f"work in progress on {name} {rng.random():.6f}\n"})
    return s.bytes()


def wiki_stream(seed: int, index: int, name: str) -> bytes:
    rng = rng_for(seed, "wiki", index)
    s = Stream(1_610_000_000 + index * 86_400)
    tip = None
    pages = {"Home.md": f"# {name} wiki\n\nWelcome.\n"}
    for c in range(rng.randint(1, 3)):
        pages[f"Page-{c}.md"] = f"# Page {c} of {name}\n\n{rng.random():.8f}\n"
        tip = s.commit("refs/heads/master", people(rng), f"Updated page {c}\n", tip, dict(pages))
    return s.bytes()


def fast_import(git_dir: str, stream: bytes, branch: str | None = None) -> None:
    """Into a new bare repository when `branch` (its HEAD) is given, else into an existing one."""
    if branch:
        subprocess.run(["git", "init", "-q", "--bare", "--template=", "-b", branch, git_dir], check=True)
    subprocess.run(["git", "--git-dir", git_dir, "fast-import", "--quiet"], input=stream, check=True)


def org_world(n: int, seed: int) -> list[dict]:
    """The organisation's repositories as world.json entries (the world's list order)."""
    rng = rng_for(seed, "world")
    wikis = set(rng.sample(range(n), max(1, round(n * 0.02))))
    out = []
    for i in range(n):
        r = rng_for(seed, "name", i)
        out.append({"owner": ORG, "name": f"{r.choice(WORDS)}-{r.choice(KINDS)}-{i:04d}",
                    "private": rng.random() < 0.2, "has_wiki": i in wikis, "default_branch": "main",
                    "description": f"acme repository {i}"})
    return out


def prepare_org(work: str, n: int, seed: int) -> tuple[str, dict]:
    """The cached organisation: DIR/git/github/acme/*.git and DIR/repos.json; returns DIR and
    its stamp (generation time, key)."""
    cache = os.path.join(work, f"forge-{n}-{seed}")
    key = {"generator": GENERATOR_VERSION, "git": bench.out(["git", "--version"]).strip(), "repos": n, "seed": seed}
    stamp_path = os.path.join(cache, "stamp.json")
    if os.path.exists(stamp_path):
        with open(stamp_path) as f:
            stamp = json.load(f)
        if stamp.get("key") == key:
            return cache, stamp
    bench.rmtree(cache)
    repos = org_world(n, seed)
    base = os.path.join(cache, "git", "github", ORG)
    os.makedirs(base)
    print(f"generating {n} repositories in {cache} ...", flush=True)
    t0 = time.perf_counter()

    def one(i: int) -> None:
        name = repos[i]["name"]
        fast_import(os.path.join(base, f"{name}.git"), repo_stream(seed, i, name), "main")
        if repos[i]["has_wiki"]:
            fast_import(os.path.join(base, f"{name}.wiki.git"), wiki_stream(seed, i, name), "master")

    with concurrent.futures.ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        list(pool.map(one, range(n)))
    with open(os.path.join(cache, "repos.json"), "w") as f:
        json.dump(repos, f, indent=0)
    stamp = {"key": key, "seconds": round(time.perf_counter() - t0, 2), "bytes": bench.apparent_bytes(base),
             "wikis": sum(r["has_wiki"] for r in repos), "private": sum(r["private"] for r in repos)}
    with open(stamp_path, "w") as f:
        json.dump(stamp, f, indent=1)
    print(f"generated in {stamp['seconds']:.1f} s ({stamp['bytes'] / 1e6:.1f} MB)", flush=True)
    return cache, stamp


def push_commit(git_dir: str, seed: int, tag: str) -> None:
    """One new commit on main, written straight into the bare repository (as a push would)."""
    tip = bench.out(["git", "--git-dir", git_dir, "rev-parse", "refs/heads/main"]).strip()
    rng = rng_for(seed, "change", tag)
    s = Stream(1_700_000_000 + rng.randint(0, 10_000_000))
    s.commit("refs/heads/main", people(rng), f"Change {tag}\n", tip,
             {f"CHANGES-{tag}.md": f"change {tag}: {rng.random():.10f}\n"})
    fast_import(git_dir, s.bytes())


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


def forks() -> int:
    """Processes created on the whole machine since boot."""
    with open("/proc/stat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("processes "))


def cpu_split(pid: int) -> tuple[float, float]:
    """(own CPU, CPU of reaped children) of a live process, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / hz, (int(fields[13]) + int(fields[14])) / hz


class Sampler:
    """Keeps the last /proc reading of a running child, so that its own CPU can be told from
    its git children's once it is gone (wait4 only gives the sum). At most 50 ms stale."""

    def __init__(self, pid: int):
        self.pid, self.last = pid, (0.0, 0.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.last = cpu_split(self.pid)
            except (OSError, IndexError, ValueError):
                return

    def finish(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return self.last


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Ctx:
    def __init__(self, binary: str, scratch: str, log: str, root: str, repos: list[dict]):
        self.binary, self.scratch, self.log, self.root, self.repos = binary, scratch, log, root, repos
        self.metadata = False  # --metadata: back up issues and pull requests too
        self.server: storage.Server | None = None
        self.api = ""

    def requests_path(self) -> str:
        return os.path.join(self.root, "requests.jsonl")

    def clear_requests(self) -> None:
        open(self.requests_path(), "w").close()  # the server appends, opening the file per line

    def requests(self) -> list[dict]:
        with open(self.requests_path()) as f:
            return [json.loads(line) for line in f if line.strip()]

    def git_auth_env(self) -> dict:
        """The authorization gitvault gives git: a host-scoped extraHeader with Basic x-access-token."""
        basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.http://127.0.0.1:{self.server.port}/.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}", "GIT_TERMINAL_PROMPT": "0"}

    def urls(self) -> list[str]:
        base = f"http://127.0.0.1:{self.server.port}/github/{ORG}"
        out = [f"{base}/{r['name']}.git" for r in self.repos]
        return out + [f"{base}/{r['name']}.wiki.git" for r in self.repos if r["has_wiki"]]


def summarize_requests(reqs: list[dict]) -> dict:
    api = [r for r in reqs if r.get("kind") == "api"]
    git = [r for r in reqs if r.get("kind") == "git"]
    listing = f"/github/api/v3/orgs/{ORG}/repos"
    paths: dict = {}
    for r in api:
        paths[r["path"]] = paths.get(r["path"], 0) + 1
    return {
        "api": {"total": len(api), "pages": sum(r["path"] == listing for r in api), "by_path": paths,
                "queries": sorted({r["query"] for r in api if r["path"] == listing}),
                "not_ok": sum(not 200 <= r["status"] < 400 for r in api)},
        "git": {"total": len(git), "info_refs": sum(r["method"] == "GET" and r["path"].endswith("/info/refs") for r in git),
                "ls_refs": sum(r.get("command") == "ls-refs" for r in git),
                "fetch": sum(r.get("command") == "fetch" for r in git),
                "other": sum(not (r["method"] == "GET" and r["path"].endswith("/info/refs"))
                             and r.get("command") not in ("ls-refs", "fetch") for r in git),
                "not_ok": sum(not 200 <= r["status"] < 400 for r in git)},
        "other": len(reqs) - len(api) - len(git),
    }


def timeline(reqs: list[dict], t0: float, t1: float) -> dict:
    """Phases of a run from the request log's timestamps (millisecond precision)."""
    def at(r):
        return dt.datetime.fromisoformat(r["time"]).timestamp()
    api = [at(r) for r in reqs if r.get("kind") == "api"]
    git = [at(r) for r in reqs if r.get("kind") == "git"]
    if not api or not git:
        return {}
    return {"to_first_request_s": round(min(api) - t0, 3), "listing_s": round(max(api) - min(api), 3),
            "listing_to_first_git_s": round(min(git) - max(api), 3), "repositories_s": round(max(git) - min(git), 3),
            "after_last_request_s": round(t1 - max(git), 3)}


def vault_files(vault: str) -> dict[str, int]:
    out = {}
    for dirpath, _, files in os.walk(vault):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, vault)] = os.lstat(p).st_size
    return out


def new_files(before: dict, after: dict) -> dict:
    """New files per top-level directory of the vault."""
    out: dict = {}
    for rel in after.keys() - before.keys():
        top = rel.split(os.sep, 1)[0]
        out[top] = out.get(top, 0) + 1
    return out


def gitvault_backup(ctx: Ctx, vault: str, cache: str, jobs: int, path_prefix: str | None = None) -> dict:
    """One `gitvault backup --json` of the organisation, measured."""
    env = dict(os.environ, GITVAULT_PASSWORD=bench.PASSWORD, GITVAULT_CACHE_DIR=cache, GITHUB_TOKEN=TOKEN)
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    cmd = [ctx.binary, "backup", "--json", "-q", "--vault", vault, "--api-url", ctx.api, "--jobs", str(jobs),
           f"github:{ORG}"]
    if not ctx.metadata:
        # The "Forge accounts" target is about git data; issues and pull requests (on by default
        # since the "Metadata" issue) are measured by bench/metadata.py, or here with --metadata.
        cmd.insert(2, "--no-metadata")
    before = vault_files(vault)
    ctx.clear_requests()
    os.sync()  # the previous step's dirty pages are not this step's cost
    cpu0, srv0, forks0, load0 = children_cpu(), cpu_split(ctx.server.proc.pid), forks(), os.getloadavg()[0]
    out_path = os.path.join(ctx.scratch, "backup.json")
    with open(out_path, "wb") as out, open(ctx.log, "ab") as logf:
        logf.write(f"\n$ {' '.join(cmd)}\n".encode())
        logf.flush()
        t0, p0 = time.time(), time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=logf)
        sampler = Sampler(p.pid)
        _, status, usage = os.wait4(p.pid, 0)
        seconds, t1 = time.perf_counter() - p0, time.time()
    own = sampler.finish()[0]
    srv1 = cpu_split(ctx.server.proc.pid)
    cpu, nforks = children_cpu() - cpu0, forks() - forks0
    code = os.waitstatus_to_exitcode(status)
    with open(out_path) as f:
        text = f.read()
    if code != 0:
        raise bench.ToolError(f"gitvault backup exited {code}: {text[-500:]} (log: {ctx.log})")
    report = json.loads(text)
    reqs = ctx.requests()
    after = vault_files(vault)
    repos = report.get("repositories", [])
    durations = [r.get("duration_ms", 0) for r in repos]
    return {
        "s": round(seconds, 3), "rss_kb": usage.ru_maxrss, "cpu_s": round(cpu, 3),
        "user_s": round(usage.ru_utime, 3), "sys_s": round(usage.ru_stime, 3),
        "own_cpu_s": round(own, 3), "server_cpu_s": round(srv1[0] + srv1[1] - srv0[0] - srv0[1], 3),
        "server_python_cpu_s": round(srv1[0] - srv0[0], 3), "forks": nforks, "loadavg_1m_before": load0,
        "requests": summarize_requests(reqs), "timeline": timeline(reqs, t0, t1),
        "gitvault_reported_api_requests": (report.get("accounts") or [{}])[0].get("requests"),
        "repositories": len(repos), "failures": len(report.get("failures", [])),
        "skipped": len(report.get("skipped", [])),
        "objects_added": sum(r.get("objects_added", 0) for r in repos),
        "reported_bytes_added": sum(r.get("bytes_added", 0) for r in repos),
        "repo_ms_median": statistics.median(durations) if durations else None,
        "repo_ms_sum": sum(durations),
        "vault_bytes_added": sum(after.values()) - sum(before.values()),
        "new_files": new_files(before, after),
        "data_files_added": sum(1 for k in after.keys() - before.keys() if k.startswith("data" + os.sep)),
        "snapshot": report.get("snapshot"),
    }


def ls_remote_loop(ctx: Ctx, parallel: int) -> dict:
    """`git ls-remote` of every clone and wiki URL: one after another (parallel=1) or N at once."""
    env = dict(os.environ, **ctx.git_auth_env())
    urls = ctx.urls()

    def one(url: str) -> int:
        return subprocess.run(["git", "ls-remote", url], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode

    ctx.clear_requests()
    cpu0, srv0, forks0 = children_cpu(), cpu_split(ctx.server.proc.pid), forks()
    t0 = time.perf_counter()
    if parallel == 1:
        codes = [one(u) for u in urls]
    else:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            codes = list(pool.map(one, urls))
    seconds = time.perf_counter() - t0
    failed = sum(c != 0 for c in codes)
    if failed:
        raise bench.ToolError(f"git ls-remote failed for {failed} of {len(urls)} URLs")
    srv1 = cpu_split(ctx.server.proc.pid)
    return {"s": round(seconds, 3), "cpu_s": round(children_cpu() - cpu0, 3),
            "server_cpu_s": round(srv1[0] + srv1[1] - srv0[0] - srv0[1], 3),
            "server_python_cpu_s": round(srv1[0] - srv0[0], 3), "forks": forks() - forks0,
            "urls": len(urls), "parallel": parallel, "requests": summarize_requests(ctx.requests())}


def local_ref_reads(cache: str) -> dict:
    """What gitvault's three local git commands per repository in a no-change run cost by
    themselves: the same commands (`rev-parse --show-object-format`, `for-each-ref`,
    `symbolic-ref -q HEAD`) on every mirror of the cache, one after another."""
    mirrors = sorted(glob.glob(os.path.join(cache, "mirrors", "*.git")))
    cmds = [["rev-parse", "--show-object-format"], ["-c", "core.quotePath=false", "for-each-ref",
                                                    "--format=%(objectname) %(refname)"], ["symbolic-ref", "-q", "HEAD"]]
    cpu0, t0 = children_cpu(), time.perf_counter()
    for m in mirrors:
        for c in cmds:
            subprocess.run(["git", "-C", m, *c], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return {"mirrors": len(mirrors), "commands": len(mirrors) * len(cmds), "s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(children_cpu() - cpu0, 3)}


def git_wrapper(scratch: str) -> tuple[str, str]:
    """A directory with a `git` that logs its arguments and execs the real git."""
    d = os.path.join(scratch, "wrapper")
    os.makedirs(d, exist_ok=True)
    real, log = shutil.which("git"), os.path.join(scratch, "git-calls.log")
    with open(os.path.join(d, "git"), "w") as f:
        f.write(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    os.chmod(os.path.join(d, "git"), 0o755)
    open(log, "w").close()
    return d, log


def git_calls(log: str, repos: int) -> dict:
    """Git subcommands gitvault ran, by name (the first argument that is not an option)."""
    counts: dict = {}
    with open(log) as f:
        for line in f:
            args = line.split()
            i = 0
            while i < len(args) and args[i].startswith("-"):
                i += 2 if args[i] in ("-c", "-C", "--git-dir") else 1
            name = args[i] if i < len(args) else "?"
            counts[name] = counts.get(name, 0) + 1
    total = sum(counts.values())
    return {"total": total, "per_repository": round(total / max(1, repos), 2), "by_command": counts}


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def start_forge(ctx: Ctx) -> None:
    port_file = os.path.join(ctx.root, "port")
    ctx.server = storage.Server([sys.executable, "-B", FAKEFORGE, "--root", ctx.root, "--port", str(storage.free_port())],
                                os.path.join(ctx.root, "fakeforge.log"), lambda _port: os.path.exists(port_file),
                                0, "the fake forge")
    with open(port_file) as f:
        ctx.server.port = int(f.read().strip())
    ctx.api = f"http://127.0.0.1:{ctx.server.port}/github/api/v3"


def run_jobs(ctx: Ctx, jobs: int, reps: int, seed: int, changes: list[list[int]], wikis: int, sequential: bool) -> dict:
    """First backup, no-change runs (each beside the ls-remote loops; the one-at-a-time loop only
    when `sequential`: it does not depend on --jobs), 1%-changed runs, and one profiled no-change
    run, into a fresh vault and cache."""
    vault, cache = os.path.join(ctx.scratch, f"vault-j{jobs}"), os.path.join(ctx.scratch, f"cache-j{jobs}")
    for d in (vault, cache):
        bench.rmtree(d)
    t0 = time.perf_counter()
    bench.measure([ctx.binary, "init", "--vault", vault], env={"GITVAULT_PASSWORD": bench.PASSWORD}, log=ctx.log)
    rec: dict = {"jobs": jobs, "init_s": round(time.perf_counter() - t0, 3)}
    n = len(ctx.repos)
    rec["first"] = gitvault_backup(ctx, vault, cache, jobs)
    rec["first"]["vault_bytes"] = bench.apparent_bytes(vault)
    f = rec["first"]
    print(f"[jobs {jobs}] first backup {f['s']:.1f}s, {f['requests']['git']['fetch']} fetches, "
          f"{f['vault_bytes'] / 1e6:.1f} MB vault, {f['failures']} failures", flush=True)
    rec["nochange"], rec["ls_remote_seq"], rec["ls_remote_par"] = [], [], []
    for i in range(reps):
        # Alternate which runs first so that neither always gets the warmer machine.
        steps = [("nochange", lambda: gitvault_backup(ctx, vault, cache, jobs)),
                 ("ls_remote_seq", lambda: ls_remote_loop(ctx, 1)),
                 ("ls_remote_par", lambda: ls_remote_loop(ctx, jobs))]
        if not sequential:
            del steps[1]
        for key, step in steps if i % 2 == 0 else steps[::-1]:
            rec[key].append(step())
        r, p = rec["nochange"][-1], rec["ls_remote_par"][-1]
        seq = f"loop {rec['ls_remote_seq'][-1]['s']:.2f}s, " if sequential else ""
        print(f"[jobs {jobs}] no-change {i + 1}/{reps}: gitvault {r['s']:.2f}s (cpu {r['cpu_s']:.1f}s, forge cpu "
              f"{r['server_cpu_s']:.1f}s), {r['requests']['api']['total']} api, {r['requests']['git']['info_refs']} "
              f"adverts, {r['requests']['git']['fetch']} fetches, {r['data_files_added']} data files | ls-remote "
              f"{seq}{jobs} at a time {p['s']:.2f}s", flush=True)
    rec["changed"] = []
    for i in range(reps):
        names = [ctx.repos[k]["name"] for k in changes[i]]
        for k, name in zip(changes[i], names):
            push_commit(os.path.join(ctx.root, "git", "github", ORG, f"{name}.git"), seed, f"j{jobs}-r{i}-{k}")
        r = gitvault_backup(ctx, vault, cache, jobs)
        r["changed_repositories"] = names
        rec["changed"].append(r)
        print(f"[jobs {jobs}] {len(names)} changed {i + 1}/{reps}: {r['s']:.2f}s, {r['requests']['git']['fetch']} "
              f"fetches, +{r['vault_bytes_added'] / 1e3:.1f} kB", flush=True)
    wrapper, log = git_wrapper(ctx.scratch)
    rec["profiled_nochange"] = gitvault_backup(ctx, vault, cache, jobs, path_prefix=wrapper)
    rec["profiled_nochange"]["git_calls"] = git_calls(log, n + wikis)
    print(f"[jobs {jobs}] profiled no-change: {rec['profiled_nochange']['git_calls']}", flush=True)
    rec["local_ref_reads"] = local_ref_reads(cache)
    print(f"[jobs {jobs}] local ref reads alone: {rec['local_ref_reads']}", flush=True)
    return rec


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def checks(result: dict, rec: dict) -> list[dict]:
    """The target's clauses, each with what was measured in the no-change (and 1%) runs."""
    n, wikis = result["repos"], result["wikis"]
    pages = math.ceil(n / PAGE)
    nc = rec["nochange"]
    out = [
        {"check": "no-change run takes under 30 s (median)", "expected": f"< {TARGET_S:.0f} s",
         "measured": f"{med(r['s'] for r in nc):.2f} s ({min(r['s'] for r in nc):.2f}–{max(r['s'] for r in nc):.2f} s)",
         "met": med(r["s"] for r in nc) < TARGET_S},
        {"check": "API requests: one per listing page", "expected": f"{pages} (`GET /orgs/{ORG}/repos`)",
         "measured": ", ".join(sorted({f"{r['requests']['api']['total']} ({r['requests']['api']['pages']} listing)" for r in nc}))
         + ("; other endpoints: " + ", ".join(sorted({p for r in nc for p in r["requests"]["api"]["by_path"]
                                                        if not p.endswith(f"/orgs/{ORG}/repos")}))
            if any(r["requests"]["api"]["total"] != r["requests"]["api"]["pages"] for r in nc) else ""),
         "met": all(r["requests"]["api"]["total"] <= pages for r in nc)},
        {"check": "one ref advertisement per repository and wiki", "expected": f"{n + wikis} GET info/refs ({n} + {wikis} wikis)",
         "measured": ", ".join(sorted({f"{r['requests']['git']['info_refs']} GET, {r['requests']['git']['ls_refs']} ls-refs" for r in nc})),
         "met": all(r["requests"]["git"]["info_refs"] <= n + wikis and r["requests"]["git"]["ls_refs"] <= n + wikis for r in nc)},
        {"check": "no fetch", "expected": "0 POST fetch",
         "measured": ", ".join(sorted({str(r["requests"]["git"]["fetch"]) for r in nc})),
         "met": all(r["requests"]["git"]["fetch"] == 0 for r in nc)},
        {"check": "no new data, only the snapshot", "expected": "0 files under data/",
         "measured": "; ".join(sorted({", ".join(f"{v} {k}/" for k, v in sorted(r["new_files"].items())) or "nothing" for r in nc}))
         + f"; +{med(r['vault_bytes_added'] for r in nc) / 1e3:.1f} kB",
         "met": all(r["data_files_added"] == 0 for r in nc)},
        {"check": "every repository backed up, none failed", "expected": f"{n + wikis} repositories, 0 failures",
         "measured": ", ".join(sorted({f"{r['repositories']} repositories, {r['failures']} failures" for r in nc})),
         "met": all(r["repositories"] == n + wikis and r["failures"] == 0 for r in nc)},
    ]
    ch = rec["changed"]
    want = len(ch[0]["changed_repositories"]) if ch else 0
    out.append({"check": f"1% changed: one fetch per changed repository", "expected": f"{want} POST fetch",
                "measured": ", ".join(sorted({str(r["requests"]["git"]["fetch"]) for r in ch})),
                "met": all(r["requests"]["git"]["fetch"] == want for r in ch)})
    return out


def where_time_goes(rec: dict, repos: int) -> str:
    """A paragraph on the no-change runs: phases, CPU on each side, processes."""
    nc = rec["nochange"]
    tl = {k: med(r["timeline"].get(k) for r in nc) for k in nc[0]["timeline"]}
    cpu, own = med(r["cpu_s"] for r in nc), med(r.get("own_cpu_s") for r in nc)
    srv, py = med(r["server_cpu_s"] for r in nc), med(r.get("server_python_cpu_s") for r in nc)
    git_reqs = nc[0]["requests"]["git"]["total"]
    prof = rec["profiled_nochange"]["git_calls"]
    top = ", ".join(f"{v} {k}" for k, v in sorted(prof["by_command"].items(), key=lambda kv: -kv[1]))
    text = (f"Where the no-change time goes: start to first API request {tl.get('to_first_request_s', 0):.2f} s, "
            f"listing {tl.get('listing_s', 0):.2f} s, listing to first ref advertisement "
            f"{tl.get('listing_to_first_git_s', 0):.2f} s (vault unlock: key derivation), ref advertisements "
            f"{tl.get('repositories_s', 0):.2f} s, last request to exit {tl.get('after_last_request_s', 0):.2f} s "
            f"(snapshot, ledger). CPU: gitvault and its git processes {cpu:.1f} s ({cpu / repos * 1000:.1f} ms per "
            f"repository; gitvault itself ≈{own or 0:.1f} s), the fake forge {srv:.1f} s ({srv / max(1, git_reqs) * 1000:.1f} ms "
            f"per git request; its Python {py or 0:.1f} s, `git http-backend` and `upload-pack` {srv - (py or 0):.1f} s); "
            f"together {(cpu + srv) / repos * 1000:.1f} ms of CPU per repository. "
            f"{med(r['forks'] for r in nc):.0f} processes and threads created on the machine "
            f"({med(r['forks'] for r in nc) / repos:.1f} per repository, both sides). gitvault ran "
            f"{prof['per_repository']} git commands per repository ({top}; counted in one extra run through a "
            "logging `git` wrapper)")
    loc = rec.get("local_ref_reads")
    if loc and loc["commands"]:
        text += (f"; the three local ones alone (`rev-parse --show-object-format`, `for-each-ref`, `symbolic-ref`, on "
                 f"every mirror, one after another) take {loc['s']:.1f} s and {loc['cpu_s']:.1f} s of CPU "
                 f"({loc['cpu_s'] / loc['commands'] * 1000:.1f} ms per command)")
    return text + "."


def table(result: dict) -> str:
    """The markdown section body for one result (used by run.py's write_report)."""
    n, wikis = result["repos"], result["wikis"]
    lines = [f"Organisation `{ORG}` of {n:,} generated repositories ({wikis} with a wiki, {result['private']} private; "
             f"{result['source_bytes'] / 1e6:.1f} MB of bare repositories) on the fake forge "
             f"(`fakeforge.py`, Python, `git http-backend` per git request"
             + "). Command: "
             f"`gitvault backup --json --jobs J --api-url URL github:{ORG}`. Medians of {result['reps']} runs; "
             f"times include process start and key derivation (Argon2id default costs). Reference rows run "
             "`git ls-remote URL` for the same clone and wiki URLs with the same authorization header.", ""]
    for rec in result["runs"]:
        j = rec["jobs"]
        nc, ch, first = rec["nochange"], rec["changed"], rec["first"]
        seq_runs = rec["ls_remote_seq"] or result["runs"][0]["ls_remote_seq"]  # measured once, with the first --jobs
        seq, par = med(r["s"] for r in seq_runs), med(r["s"] for r in rec["ls_remote_par"])
        gvs = med(r["s"] for r in nc)

        def reqs(rs):
            a = med(r["requests"]["api"]["total"] for r in rs)
            g = rs[0]["requests"]["git"]
            return f"{a:.0f} API, {g['info_refs']} GET info/refs, {g['ls_refs']} ls-refs"

        def cpu(rs):
            return f"{med(r['cpu_s'] for r in rs):.1f} s / {med(r['server_cpu_s'] for r in rs):.1f} s"

        lines += [f"**--jobs {j}**", "",
                  "| step | time | peak RSS | CPU gitvault / fake forge | requests | fetches | data added | target | |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines.append(f"| first backup | {first['s']:.1f} s | {first['rss_kb'] / 1024:.0f} MiB | {cpu([first])} | {reqs([first])} | "
                     f"{first['requests']['git']['fetch']} | {first['vault_bytes'] / 1e6:.1f} MB | | |")
        ok = gvs < TARGET_S
        lines.append(f"| no change | {gvs:.2f} s | {med(r['rss_kb'] for r in nc) / 1024:.0f} MiB | {cpu(nc)} | {reqs(nc)} | "
                     f"{nc[0]['requests']['git']['fetch']} | {med(r['data_files_added'] for r in nc):.0f} data files, "
                     f"+{med(r['vault_bytes_added'] for r in nc) / 1e3:.1f} kB | < {TARGET_S:.0f} s | "
                     f"{'met' if ok else '**missed**'} |")
        if ch:
            k = len(ch[0]["changed_repositories"])
            lines.append(f"| {k} changed ({CHANGED_SHARE:.0%}) | {med(r['s'] for r in ch):.2f} s | "
                         f"{med(r['rss_kb'] for r in ch) / 1024:.0f} MiB | {cpu(ch)} | {reqs(ch)} | "
                         f"{med(r['requests']['git']['fetch'] for r in ch):.0f} | "
                         f"+{med(r['vault_bytes_added'] for r in ch) / 1e3:.1f} kB | {k} fetches | "
                         f"{'met' if all(r['requests']['git']['fetch'] == k for r in ch) else '**missed**'} |")
        lines.append(f"| reference: `git ls-remote` loop, one at a time | {seq:.2f} s | | "
                     f"{med(r['cpu_s'] for r in seq_runs):.1f} s / {med(r['server_cpu_s'] for r in seq_runs):.1f} s | "
                     f"{seq_runs[0]['requests']['git']['info_refs']} GET info/refs | | | "
                     f"gitvault {gvs / seq:.2f}× | |")
        lines.append(f"| reference: `git ls-remote`, {j} at a time | {par:.2f} s | | "
                     f"{med(r['cpu_s'] for r in rec['ls_remote_par']):.1f} s / {med(r['server_cpu_s'] for r in rec['ls_remote_par']):.1f} s | "
                     f"{rec['ls_remote_par'][0]['requests']['git']['info_refs']} GET info/refs | | | "
                     f"gitvault {gvs / par:.2f}× | |")
        lines += ["", "| check (no-change runs) | expected | measured | |", "|---|---|---|---|"]
        for c in rec["checks"]:
            lines.append(f"| {c['check']} | {c['expected']} | {c['measured']} | {'met' if c['met'] else '**missed**'} |")
        lines += ["", where_time_goes(rec, n + wikis), ""]
    m = result["machine"]
    noisy = max(m["cpu_busy_at_start"], m.get("foreign_cpu_during_run", 0)) > bench.BUSY
    lines.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']:.0f} GiB RAM, {m['cpu_busy_at_start']:.0%} "
                 f"busy before the run, {m.get('foreign_cpu_during_run', 0):.0%} of CPU used by others during it, "
                 f"load average {result['loadavg_start'][0]:.2f} at the start"
                 + (" (**noisy: rerun on an idle machine**)" if noisy else "") + f". {result['git']}; {result['version']}"
                 f" ({result.get('project_commit') or 'unknown commit'}). Repositories generated in "
                 f"{result['generation_s']:.0f} s (cached).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=1000, help="repositories in the organisation (default: 1000)")
    ap.add_argument("--reps", type=int, default=3, help="no-change and 1%%-changed runs per --jobs value (default: 3)")
    ap.add_argument("--jobs", default="4", help="comma-separated --jobs values to try (default: 4)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gitvault", default=os.path.join(bench.ROOT, "target", "release", "gitvault"))
    ap.add_argument("--no-build", action="store_true", help="never run cargo build")
    ap.add_argument("--workdir", default=os.path.join(bench.BENCH, "work"))
    ap.add_argument("--results", default=bench.RESULTS, help="where the JSON goes (default: bench/results)")
    ap.add_argument("--no-report", action="store_true", help="write the JSON only, not BENCHMARKS.md")
    ap.add_argument("--metadata", action="store_true",
                    help="back up the repositories' metadata too (issues, pull requests...: gitvault's default); "
                         "without it, --no-metadata: the target is about git data")
    args = ap.parse_args()
    jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
    binary = os.path.abspath(args.gitvault)
    why = bench.ensure_gitvault(binary, build=not args.no_build)
    if why:
        sys.exit(f"gitvault: {why}")
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    lock = open(os.path.join(work, ".lock"), "w")  # the same lock as run.py: never two benchmarks at once
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"another benchmark is running (lock {lock.name})")
    cache, stamp = prepare_org(work, args.repos, args.seed)
    with open(os.path.join(cache, "repos.json")) as f:
        repos = json.load(f)
    k = max(1, math.ceil(args.repos * CHANGED_SHARE))
    if k * args.reps * len(jobs) > args.repos:
        sys.exit("not enough repositories for a fresh 1% per changed run")
    order = rng_for(args.seed, "changes").sample(range(args.repos), k * args.reps * len(jobs))
    scratch = os.path.join(work, "forge-run")
    bench.rmtree(scratch)
    root = os.path.join(scratch, "forge")
    os.makedirs(root)
    t0 = time.perf_counter()
    subprocess.run(["cp", "-a", os.path.join(cache, "git"), root], check=True)
    copy_s = time.perf_counter() - t0
    world = {"tokens": {TOKEN: {"login": "bench"}},
             "github": {"accounts": {ORG: {"type": "Organization", "members": ["bench"]}, "bench": {"type": "User"}},
                        "repos": repos}}
    with open(os.path.join(root, "world.json"), "w") as f:
        json.dump(world, f)
    log = os.path.join(work, f"forge-{args.repos}.log")
    open(log, "w").close()
    ctx = Ctx(binary, scratch, log, root, repos)
    wikis = sum(r["has_wiki"] for r in repos)
    os.sync()
    result = {"repos": args.repos, "seed": args.seed, "wikis": wikis, "private": stamp["private"],
              "source_bytes": stamp["bytes"], "generation_s": stamp["seconds"], "copy_s": round(copy_s, 2),
              "reps": args.reps, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "gitvault": binary, "version": bench.out([binary, "--version"]).strip(),
              "git": bench.out(["git", "--version"]).strip(), "project_commit": bench.project_commit(),
              "machine": bench.machine_info(work), "loadavg_start": os.getloadavg(), "targets": {"nochange_s": TARGET_S},
              "runs": []}
    if result["machine"]["cpu_busy_at_start"] > bench.BUSY:
        print(f"warning: the CPUs were {result['machine']['cpu_busy_at_start']:.0%} busy before the run; "
              "times will be noisy", flush=True)
    counters = bench.cpu_counters()
    start_forge(ctx)
    try:
        for i, j in enumerate(jobs):
            changes = [order[(i * args.reps + r) * k:(i * args.reps + r + 1) * k] for r in range(args.reps)]
            rec = run_jobs(ctx, j, args.reps, args.seed, changes, wikis, sequential=i == 0)
            rec["checks"] = checks(result, rec)
            result["runs"].append(rec)
    finally:
        ctx.server.stop()
    result["machine"]["foreign_cpu_during_run"] = bench.foreign_cpu(counters, bench.cpu_counters())
    result["loadavg_end"] = os.getloadavg()
    bench.rmtree(scratch)
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, f"{dt.datetime.now(dt.timezone.utc).date().isoformat()}-forge-{args.repos}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}\n")
    print(table(result))
    if not args.no_report and os.path.abspath(args.results) == bench.RESULTS:
        bench.write_report()  # BENCHMARKS.md gets a forge section per organisation size


if __name__ == "__main__":
    main()
