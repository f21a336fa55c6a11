#!/usr/bin/env python3
"""Benchmark gitvault's remote backends against plain clients moving the same bytes.

Why: the storage layer should not be the bottleneck. The contract: for a repository of about
200 MB, a backup into S3 takes at most 1.2x the time of uploading the same bytes to the same
server with boto3, a backup over SFTP at most 1.2x the time of `sftp put` of the same bytes,
and `copy` of a vault of about 1 GB at most 1.3x a raw copy of its files between the same two
destinations. This measures the three ratios side by side, in one run, against real servers on
127.0.0.1 that it starts itself (the way crates/gitvault-storage/src/testing.rs does).

Per repetition, on the generated repository of run.py (same generator, same cache):
  S3 (moto's threaded standalone server, one bucket):
    `gitvault init` (not timed), then `gitvault backup` of a fresh copy of the source into
    s3://bench/rep-N                                                         -> time, peak RSS
    the vault's objects are downloaded once (not timed) and uploaded again under raw-N/ with
    boto3's `upload_file` and its default TransferConfig (multipart above 8 MB, 10 threads),
    in a child process like gitvault                                         -> time, peak RSS
  SFTP (OpenSSH's sshd, internal-sftp, one user key):
    `gitvault backup` into sftp://USER@127.0.0.1:PORT/.../rep-N              -> time, peak RSS
    a local copy of that vault's files sent with `sftp -b` `put -rf` (fsync per file, as gitvault
    syncs every object) and, for reference, `put -r` (no fsync) and `put -rf` over AES-GCM, the
    cipher gitvault's ssh prefers on a CPU with AES instructions             -> time, peak RSS
  copy (--copy-size, default large; skipped with --no-copy):
    vault A with a full backup (not timed); `gitvault copy --from A --to R` into a fresh replica
    R made with `init --keys-from A` (the same keys, as a raw copy of the files has: the target
    row), and into a fresh vault B with its own keys (every object decrypted and sealed again:
    reported beside it) vs `cp -r A/. B2/` + `sync`                          -> time, peak RSS
    then A into S3: `copy` into s3://bench/copy-own (its own keys) and into
    s3://bench/copy-replica (`init --keys-from A`), vs boto3 uploading A's files -> time
The first repetition of each backend also restores the latest snapshot and compares its refs
with the source's, so a broken run cannot report a fast time.

Besides wall time and peak RSS, each timed step records the CPU time of the client (its
waited-for processes) and of the server process (moto, or sshd and the sessions it reaped),
which tells whether gitvault or the server is the limit.

Output: the medians on stdout (a markdown table) and every repetition in
bench/results/<date>-storage-<size>.json. BENCHMARKS.md is not touched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import http.client
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import copy_vault  # noqa: E402  (gv and copy_files for the copy step)
import run as bench  # noqa: E402  (the main runner: measuring, sources, gitvault build)

BUCKET = "bench"
S3_TARGET, SFTP_TARGET, COPY_TARGET = 1.2, 1.2, 1.3
# moto accepts any credentials; fixed ones keep ~/.aws out of the picture.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                  "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                  "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
SSHD = "/usr/sbin/sshd"


# ---------------------------------------------------------------------------
# Servers on 127.0.0.1 (mirrors crates/gitvault-storage/src/testing.rs)
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and of the children it has reaped (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


class Server:
    """A child process serving on a free port of 127.0.0.1; stopped by stop()."""

    def __init__(self, cmd: list[str], log: str, ready, port: int, what: str):
        self.port, self.log = port, log
        with open(log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        deadline = time.monotonic() + 60
        while not ready(port):
            if self.proc.poll() is not None:
                with open(log, errors="replace") as f:
                    sys.exit(f"{what} exited with {self.proc.returncode} before answering:\n{f.read()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"{what} did not answer on port {port} within 60 s (log: {log})")
            time.sleep(0.1)

    def cpu(self) -> float:
        return process_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http_answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except OSError:
        return False


def ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(4) == b"SSH-"
    except OSError:
        return False


def create_bucket(port: int) -> None:
    """A plain request (moto accepts unsigned ones): gitvault never creates a bucket."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("PUT", f"/{BUCKET}")
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit(f"cannot create bucket {BUCKET} on moto: HTTP {resp.status} {resp.read()[:300]!r}")


def start_moto(work: str) -> Server:
    """moto's own entry point, threaded as shipped (a real S3 serves requests concurrently,
    and boto3's multipart upload relies on that)."""
    port = free_port()
    return Server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                  os.path.join(work, "moto.log"), http_answers, port,
                  "moto's server (pip install 'moto[server]')")


def keygen(path: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitvault-bench", "-f", path],
                   check=True, stdin=subprocess.DEVNULL)


def start_sshd(d: str) -> tuple[Server, str, str]:
    """sshd with a fresh host key accepting one fresh user key for the current user; returns
    the server, the ssh_config for clients (`ssh -F`) and the user name. Nothing touches ~/.ssh."""
    if not os.path.exists(SSHD):
        sys.exit(f"{SSHD} is missing: apt-get install openssh-server openssh-client")
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir, made by the service normally
    for key in ("host_key", "user_key"):
        keygen(os.path.join(d, key))
    shutil.copy(os.path.join(d, "user_key.pub"), os.path.join(d, "authorized_keys"))
    user = bench.out(["id", "-un"]).strip()
    port = free_port()
    with open(os.path.join(d, "sshd_config"), "w") as f:
        f.write(f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                f"PermitRootLogin prohibit-password\nAllowUsers {user}\nPidFile {d}/sshd.pid\nMaxStartups 100\n"
                "MaxSessions 100\nSubsystem sftp internal-sftp\n")
    with open(os.path.join(d, "host_key.pub")) as f:
        host_pub = " ".join(f.read().split()[:2])
    with open(os.path.join(d, "known_hosts"), "w") as f:
        f.write(f"[127.0.0.1]:{port} {host_pub}\n")
    config = os.path.join(d, "ssh_config")
    with open(config, "w") as f:
        f.write(f"UserKnownHostsFile {d}/known_hosts\nGlobalKnownHostsFile /dev/null\nIdentityFile {d}/user_key\n"
                "IdentitiesOnly yes\nIdentityAgent none\nBatchMode yes\n")
    server = Server([SSHD, "-D", "-e", "-f", os.path.join(d, "sshd_config")], os.path.join(d, "sshd.log"),
                    ssh_banner, port, "sshd")
    return server, config, user


# ---------------------------------------------------------------------------
# Timed steps
# ---------------------------------------------------------------------------


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], log: str, server: Server | None, env: dict | None = None) -> dict:
    """One measured child: wall time, peak RSS, its CPU time and the server's meanwhile."""
    os.sync()  # the previous step's dirty pages are not this step's cost
    cpu0, srv0 = children_cpu(), server.cpu() if server else 0.0
    m = bench.measure(cmd, env=env, log=log)[0]
    r = {"s": m.seconds, "rss_kb": m.rss_kb, "cpu_s": round(children_cpu() - cpu0, 3)}
    if server:
        r["server_cpu_s"] = round(server.cpu() - srv0, 3)
    return r


def gv(ctx, args: list[str], env: dict | None = None, server: Server | None = None) -> dict:
    env = dict(env or {}, GITVAULT_PASSWORD=bench.PASSWORD, GITVAULT_CACHE_DIR=os.path.join(ctx.work, "cache"))
    return timed([ctx.binary, *args], ctx.log, server, env)


def check_restore(ctx, vault: str, live: str, env: dict, server: Server) -> dict:
    """Restore the latest snapshot and compare its refs with the source's."""
    target = os.path.join(ctx.work, "restored.git")
    bench.rmtree(target)
    m = gv(ctx, ["restore", "-q", "--vault", vault, "latest", "--target", target], env, server)
    ok = bench.refs_of(target) == bench.refs_of(live)
    bench.rmtree(target)
    return {"restore_s": m["s"], "restore_ok": ok}


def fresh_live(ctx) -> str:
    live = os.path.join(ctx.work, "live.git")
    bench.copy_repo(ctx.src, live)
    bench.warm(live)
    return live


def s3_worker(argv: list[str]) -> None:
    """Child process for everything boto3 does, so that the harness itself stays small: a
    child's peak RSS (ru_maxrss) starts at its parent's peak when it is forked, and importing
    boto3 here would make every small child look like 130 MiB.

      put DIR PREFIX OUT   upload every file of DIR under PREFIX/ with upload_file (default
                           TransferConfig), one file after another, as `aws s3 cp --recursive`
                           with one worker would; OUT gets the transfer time alone
      fetch PREFIX DIR OUT download every object under PREFIX/ into DIR; OUT gets count and bytes
      delete PREFIX        delete every object under PREFIX/
    """
    import boto3
    from botocore.config import Config
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                          config=Config(s3={"addressing_style": "path"}))
    action, args = argv[0], argv[1:]
    if action == "put":
        root, prefix, out = args
        files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
        t0 = time.perf_counter()
        for rel in files:
            client.upload_file(os.path.join(root, rel), BUCKET, f"{prefix}/{rel}")
        facts = {"upload_s": time.perf_counter() - t0, "objects": len(files)}
    else:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=args[0] + "/")
        objects = [o for p in pages for o in p.get("Contents", [])]
        if action == "delete":
            for o in objects:
                client.delete_object(Bucket=BUCKET, Key=o["Key"])
            return
        prefix, root, out = args
        for o in objects:
            path = os.path.join(root, os.path.relpath(o["Key"], prefix))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            client.download_file(BUCKET, o["Key"], path)
        facts = {"objects": len(objects), "bytes": sum(o["Size"] for o in objects)}
    with open(out, "w") as f:
        json.dump(facts, f)


def s3_helper(ctx, env: dict, *args: str, server: Server | None = None) -> dict:
    """Run the boto3 worker; timed when given the server, else a quick untimed helper."""
    out = os.path.join(ctx.work, "s3.json")
    cmd = [sys.executable, os.path.abspath(__file__), "_s3", *args]
    if args[0] != "delete":
        cmd.append(out)
    if server:
        r = timed(cmd, ctx.log, server, env)
    else:
        r = {}
        bench.measure(cmd, env=env, log=ctx.log)
    if args[0] != "delete":
        with open(out) as f:
            r.update(json.load(f))
    return r


def local_rep(ctx) -> dict:
    """The same backup into a vault on local disk: gitvault's own work, with no network."""
    vault = os.path.join(ctx.work, "local-vault")
    bench.rmtree(vault)
    live = fresh_live(ctx)
    gv(ctx, ["init", "--vault", vault])
    r = {"gitvault": gv(ctx, ["backup", "-q", "--vault", vault, live])}
    bench.rmtree(vault)
    return r


def s3_rep(ctx, moto: Server, i: int, check: bool) -> dict:
    env = dict(S3_CREDENTIALS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto.port}")
    vault = f"s3://{BUCKET}/rep-{i}"
    live = fresh_live(ctx)
    gv(ctx, ["init", "--vault", vault], env)
    r = {"gitvault": gv(ctx, ["backup", "-q", "--vault", vault, live], env, moto)}
    # The same bytes: the vault's objects as they sit in the bucket.
    local = os.path.join(ctx.work, "objects")
    bench.rmtree(local)
    r.update(s3_helper(ctx, env, "fetch", f"rep-{i}", local))
    bench.warm(local)
    r["boto3"] = s3_helper(ctx, env, "put", local, f"raw-{i}", server=moto)
    if r["boto3"]["objects"] != r["objects"]:
        raise bench.ToolError(f"boto3 uploaded {r['boto3']['objects']} objects, the vault has {r['objects']}")
    if check:
        r.update(check_restore(ctx, vault, live, env, moto))
    for prefix in (f"rep-{i}", f"raw-{i}"):  # keep moto's memory flat from one rep to the next
        s3_helper(ctx, env, "delete", prefix)
    return r


def sftp_rep(ctx, sshd: Server, ssh: dict, i: int, check: bool) -> dict:
    srv = os.path.join(ssh["dir"], "srv")
    env = {"GITVAULT_SSH_CONFIG": ssh["config"], "TMPDIR": ssh["tmp"]}
    vault = f"sftp://{ssh['user']}@127.0.0.1:{sshd.port}{srv}/rep-{i}"
    live = fresh_live(ctx)
    gv(ctx, ["init", "--vault", vault], env)
    r = {"gitvault": gv(ctx, ["backup", "-q", "--vault", vault, live], env, sshd)}
    local = os.path.join(ctx.work, "objects")
    bench.rmtree(local)
    shutil.copytree(os.path.join(srv, f"rep-{i}"), local)
    r.update(objects=sum(len(fs) for _, _, fs in os.walk(local)), bytes=bench.apparent_bytes(local))
    # gitvault's ssh prefers AES-GCM on a CPU with AES instructions (its default configuration
    # names no ciphers here); `sftp` keeps ssh's default (ChaCha20-Poly1305), and is also timed
    # with the same AES-GCM for reference.
    for key, flags, cipher in (("sftp", "-rf", None), ("sftp_nofsync", "-r", None),
                               ("sftp_aes", "-rf", "aes128-gcm@openssh.com")):
        dest = os.path.join(srv, f"{key}-{i}")
        batch = os.path.join(ctx.work, "batch")
        with open(batch, "w") as f:
            f.write(f"put {flags} {local} {dest}\n")
        bench.warm(local)
        r[key] = timed(["sftp", "-q", "-F", ssh["config"], "-P", str(sshd.port), *(["-c", cipher] if cipher else []),
                        "-b", batch, f"{ssh['user']}@127.0.0.1"], ctx.log, sshd)
        if bench.apparent_bytes(dest) != r["bytes"]:
            raise bench.ToolError(f"sftp put {flags} stored {bench.apparent_bytes(dest)} bytes, expected {r['bytes']}")
        bench.rmtree(dest)
    if check:
        r.update(check_restore(ctx, vault, live, env, sshd))
    bench.rmtree(os.path.join(srv, f"rep-{i}"))
    return r


def copy_rep(ctx, src: str) -> dict:
    """Full copy of a vault into a fresh vault with its own keys and into a fresh `--keys-from`
    replica (the same keys, as a raw copy of the files has), against cp -r + sync of its files."""
    work = os.path.join(ctx.work, "copy")
    bench.rmtree(work)
    os.makedirs(work)
    a, b, replica, raw = (os.path.join(work, n) for n in ("a", "b", "replica", "raw"))
    live = os.path.join(work, "live.git")
    bench.copy_repo(src, live)
    for v in (a, b):
        copy_vault.gv(ctx.binary, work, ctx.log, ["init", "--vault", v])
    copy_vault.gv(ctx.binary, work, ctx.log, ["init", "--vault", replica, "--keys-from", a])
    copy_vault.gv(ctx.binary, work, ctx.log, ["backup", "-q", "--vault", a, live])
    r = {"objects": sum(len(fs) for _, _, fs in os.walk(a)), "bytes": bench.apparent_bytes(a)}
    for key, dest in (("gitvault", b), ("replica", replica)):
        bench.warm(a)
        r[key] = gv(ctx, ["copy", "-q", "--from", a, "--to", dest])
    bench.warm(a)
    os.sync()
    r["cp"] = {"s": copy_vault.copy_files(["cp", "-r", a, raw], ctx.log).seconds}
    target = os.path.join(work, "restored.git")
    r["restore_ok"] = True
    for dest in (b, replica):
        bench.rmtree(target)
        copy_vault.gv(ctx.binary, work, ctx.log, ["restore", "-q", "--vault", dest, "latest", "--target", target])
        r["restore_ok"] = r["restore_ok"] and bench.refs_of(target) == bench.refs_of(live)
    bench.rmtree(work)
    return r


def s3_copy_rep(ctx, src: str, moto: Server) -> dict:
    """A local vault copied into S3 — into a vault with its own keys and into a `--keys-from`
    replica — against boto3 uploading the same files (run after the local copies, so that
    moto's memory cannot slow the local disk they measure)."""
    work = os.path.join(ctx.work, "copy")
    bench.rmtree(work)
    os.makedirs(work)
    a, live, target = (os.path.join(work, n) for n in ("a", "live.git", "restored.git"))
    bench.copy_repo(src, live)
    copy_vault.gv(ctx.binary, work, ctx.log, ["init", "--vault", a])
    copy_vault.gv(ctx.binary, work, ctx.log, ["backup", "-q", "--vault", a, live])
    env = dict(S3_CREDENTIALS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto.port}")
    own, replica = f"s3://{BUCKET}/copy-own", f"s3://{BUCKET}/copy-replica"
    gv(ctx, ["init", "--vault", own], env)
    gv(ctx, ["init", "--vault", replica, "--keys-from", a], env)
    r = {}
    for key, dest in (("s3_own", own), ("s3_replica", replica)):
        bench.warm(a)
        r[key] = gv(ctx, ["copy", "-q", "--from", a, "--to", dest], env, moto)
    bench.warm(a)
    r["s3_raw"] = s3_helper(ctx, env, "put", a, "copy-raw", server=moto)
    r["restore_ok"] = True
    for dest in (own, replica):
        bench.rmtree(target)
        gv(ctx, ["restore", "-q", "--vault", dest, "latest", "--target", target], env)
        r["restore_ok"] = r["restore_ok"] and bench.refs_of(target) == bench.refs_of(live)
    for prefix in ("copy-own", "copy-replica", "copy-raw"):  # keep moto's memory flat
        s3_helper(ctx, env, "delete", prefix)
    bench.rmtree(work)
    return r


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


class Ctx:
    def __init__(self, binary: str, work: str, log: str, src: str):
        self.binary, self.work, self.log, self.src = binary, work, log, src


def run_backends(ctx, reps: int) -> list[dict]:
    tmp = tempfile.mkdtemp(prefix="gvb", dir="/tmp")  # short: ssh's control socket lives under it
    ssh = {"dir": tmp, "tmp": os.path.join(tmp, "t")}
    os.makedirs(os.path.join(tmp, "srv"))
    os.makedirs(ssh["tmp"], mode=0o700)
    moto = start_moto(ctx.work)
    sshd = None
    try:
        create_bucket(moto.port)
        sshd, ssh["config"], ssh["user"] = start_sshd(tmp)
        out = []
        for i in range(reps):
            rec = {"local": local_rep(ctx), "s3": s3_rep(ctx, moto, i, i == 0),
                   "sftp": sftp_rep(ctx, sshd, ssh, i, i == 0)}
            print(f"rep {i + 1}/{reps}: local gitvault {rec['local']['gitvault']['s']:.2f}s | "
                  f"s3 gitvault {rec['s3']['gitvault']['s']:.2f}s boto3 {rec['s3']['boto3']['s']:.2f}s | sftp gitvault {rec['sftp']['gitvault']['s']:.2f}s "
                  f"put -rf {rec['sftp']['sftp']['s']:.2f}s put -r {rec['sftp']['sftp_nofsync']['s']:.2f}s",
                  flush=True)
            out.append(rec)
        return out
    finally:
        moto.stop()
        if sshd:
            sshd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def med(reps: list[dict], *path: str):
    vals = []
    for r in reps:
        for p in path:
            r = r.get(p) if isinstance(r, dict) else None
        if r is not None:
            vals.append(r)
    return statistics.median(vals) if vals else None


def table(result: dict) -> str:
    b, c = result["reps"], result.get("copy_reps") or []
    lines = [f"Storage benchmark, {result['size']} ({med(b, 's3', 'bytes') / 2**20:.1f} MiB vault, "
             f"{med(b, 's3', 'objects'):.0f} objects), link: {result.get('link', 'loopback (unshaped)')}, "
             f"medians of {len(b)}. Times include process start "
             "(and, for gitvault, key derivation) unless marked otherwise.", "",
             "| step | gitvault | reference | ratio | target |", "|---|---|---|---|---|"]

    def row(step: str, gvkey: tuple, ref: str, refkey: tuple, target: float | None, reps: list[dict]) -> None:
        g, x = med(reps, *gvkey, "s"), med(reps, *refkey)
        rss = med(reps, *gvkey, "rss_kb")
        ratio = g / x
        verdict = "" if target is None else f"≤ {target}× ({'met' if ratio <= target else '**missed**'})"
        lines.append(f"| {step} | {g:.2f} s, {rss / 1024:.0f} MiB RSS | {x:.2f} s ({ref}) | {ratio:.2f}× | {verdict} |")

    row("S3 (moto) backup", ("s3", "gitvault"), "boto3 `upload_file`", ("s3", "boto3", "s"), S3_TARGET, b)
    row("S3 (moto) backup", ("s3", "gitvault"), "the same, transfer only", ("s3", "boto3", "upload_s"), None, b)
    row("SFTP backup", ("sftp", "gitvault"), "`sftp put -rf`", ("sftp", "sftp", "s"), SFTP_TARGET, b)
    row("SFTP backup", ("sftp", "gitvault"), "`sftp put -r`, no fsync", ("sftp", "sftp_nofsync", "s"), None, b)
    if med(b, "sftp", "sftp_aes", "s") is not None:
        row("SFTP backup", ("sftp", "gitvault"), "`sftp -c aes128-gcm@openssh.com put -rf`", ("sftp", "sftp_aes", "s"), None, b)
    if c:
        lines[0] += f" Copy: {result['copy_size']} ({med(c, 'bytes') / 2**20:.0f} MiB vault), medians of {len(c)}."
        cp = "`cp -r` + `sync`"
        if med(c, "replica", "s") is not None:
            row(f"copy ({result['copy_size']}) into a `--keys-from` replica (the same keys, as a raw copy)",
                ("replica",), cp, ("cp", "s"), COPY_TARGET, c)
            row(f"copy ({result['copy_size']}) into a vault with its own keys (every object re-encrypted)",
                ("gitvault",), cp, ("cp", "s"), None, c)
        else:  # results of runs before the replica step
            row(f"copy ({result['copy_size']})", ("gitvault",), cp, ("cp", "s"), COPY_TARGET, c)
        if med(c, "s3_raw", "s") is not None:
            raw = "boto3 `upload_file` of its files"
            row(f"copy ({result['copy_size']}) local → S3", ("s3_own",), raw, ("s3_raw", "s"), COPY_TARGET, c)
            row(f"copy ({result['copy_size']}) local → S3, into a `--keys-from` replica", ("s3_replica",), raw,
                ("s3_raw", "s"), COPY_TARGET, c)
    lines.append(f"| local backup (no network) | {med(b, 'local', 'gitvault', 's'):.2f} s, "
                 f"{med(b, 'local', 'gitvault', 'rss_kb') / 1024:.0f} MiB RSS | — | — | |")
    lines.append("")
    cpu = [f"{name}: gitvault {med(b, k, 'gitvault', 'cpu_s'):.2f} s + server {med(b, k, 'gitvault', 'server_cpu_s'):.2f} s"
           f" vs {ref} {med(b, k, rk, 'cpu_s'):.2f} s + server {med(b, k, rk, 'server_cpu_s'):.2f} s"
           for name, k, ref, rk in (("S3", "s3", "boto3", "boto3"), ("SFTP", "sftp", "put -rf", "sftp"))]
    lines.append("CPU time, client + server: " + "; ".join(cpu) + f"; local backup {med(b, 'local', 'gitvault', 'cpu_s'):.2f} s.")
    checks = [f"{k} {'ok' if all(r[k].get('restore_ok', True) for r in b) else 'MISMATCH'}" for k in ("s3", "sftp")]
    checks += [f"copy {'ok' if all(r['restore_ok'] for r in c) else 'MISMATCH'}"] if c else []
    lines.append("Restored refs equal the source's: " + ", ".join(checks) + ".")
    m = result["machine"]
    noisy = max(m["cpu_busy_at_start"], m["foreign_cpu_during_run"]) > bench.BUSY
    lines.append(f"Machine: {m['nproc']} CPUs, {m['cpu_busy_at_start']:.0%} busy before the run, "
                 f"{m['foreign_cpu_during_run']:.0%} of CPU used by others during it"
                 + (" (**noisy: rerun on an idle machine**)" if noisy else "") + ".")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["_s3"]:
        return s3_worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="medium", help="repository for the S3 and SFTP backups (default: medium)")
    ap.add_argument("--copy-size", default="large", help="repository whose vault is copied (default: large, ~1 GB)")
    ap.add_argument("--no-copy", action="store_true", help="skip the copy step (generating large takes minutes)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default: 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gitvault", default=os.path.join(bench.ROOT, "target", "release", "gitvault"))
    ap.add_argument("--no-build", action="store_true", help="never run cargo build")
    ap.add_argument("--workdir", default=os.path.join(bench.BENCH, "work"))
    ap.add_argument("--results", default=bench.RESULTS, help="where the JSON goes (default: bench/results)")
    ap.add_argument("--link", metavar="RATE",
                    help="run everything in a private network namespace whose loopback is shaped to RATE "
                         "(tc tbf, e.g. 1gbit): a real link instead of memory-speed loopback (needs root)")
    args = ap.parse_args()
    if args.link and os.environ.get("GITVAULT_BENCH_LINK") != args.link:
        # Re-run inside a new network namespace: servers and clients share its shaped loopback.
        shaped = (f"ip link set lo up && tc qdisc add dev lo root tbf rate {args.link} burst 1mb latency 50ms && "
                  f"exec {sys.executable} {os.path.abspath(__file__)} " + " ".join(f"'{a}'" for a in sys.argv[1:]))
        env = dict(os.environ, GITVAULT_BENCH_LINK=args.link)
        sys.exit(subprocess.run(["unshare", "--net", "sh", "-c", shaped], env=env).returncode)
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
    src, _, sources = bench.prepare_sources(work, args.size, args.seed)
    copy_src = None if args.no_copy else bench.prepare_sources(work, args.copy_size, args.seed)
    scratch = os.path.join(work, "storage-run")
    bench.rmtree(scratch)
    os.makedirs(scratch)
    log = os.path.join(work, f"storage-{args.size}.log")
    open(log, "w").close()
    ctx = Ctx(binary, scratch, log, src)
    os.sync()
    result = {"size": args.size, "seed": args.seed, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "gitvault": binary, "version": bench.out([binary, "--version"]).strip(),
              "project_commit": bench.project_commit(), "machine": bench.machine_info(work),
              "source": sources["source"], "targets": {"s3": S3_TARGET, "sftp": SFTP_TARGET, "copy": COPY_TARGET},
              "link": args.link or "loopback (unshaped)"}
    if result["machine"]["cpu_busy_at_start"] > bench.BUSY:
        print(f"warning: the CPUs were {result['machine']['cpu_busy_at_start']:.0%} busy before the run; "
              "times will be noisy", flush=True)
    counters = bench.cpu_counters()
    result["reps"] = run_backends(ctx, args.reps)
    if copy_src:
        result.update(copy_size=args.copy_size, copy_source=copy_src[2]["source"], copy_reps=[])
        for i in range(args.reps):
            result["copy_reps"].append(copy_rep(ctx, copy_src[0]))
            r = result["copy_reps"][-1]
            print(f"copy rep {i + 1}/{args.reps}: own keys {r['gitvault']['s']:.2f}s replica {r['replica']['s']:.2f}s "
                  f"cp {r['cp']['s']:.2f}s", flush=True)
        moto = start_moto(ctx.work)
        try:
            create_bucket(moto.port)
            for i in range(args.reps):
                r = s3_copy_rep(ctx, copy_src[0], moto)
                result["copy_reps"][i].update(r, restore_ok=result["copy_reps"][i]["restore_ok"] and r["restore_ok"])
                print(f"copy into S3 rep {i + 1}/{args.reps}: own keys {r['s3_own']['s']:.2f}s "
                      f"replica {r['s3_replica']['s']:.2f}s boto3 {r['s3_raw']['s']:.2f}s", flush=True)
        finally:
            moto.stop()
    result["machine"]["foreign_cpu_during_run"] = bench.foreign_cpu(counters, bench.cpu_counters())
    # Every child's peak RSS is at least this (fork copies the parent's high-water mark).
    result["harness_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bench.rmtree(scratch)
    os.makedirs(args.results, exist_ok=True)
    suffix = f"-{args.link}" if args.link else ""
    path = os.path.join(args.results, f"{dt.datetime.now(dt.timezone.utc).date().isoformat()}-storage-{args.size}{suffix}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}\n")
    print(table(result))
    if args.results == bench.RESULTS:
        bench.write_report()  # BENCHMARKS.md gets a storage section from the newest storage run
    if not all(r[k].get("restore_ok", True) for r in result["reps"] for k in ("s3", "sftp")) or \
            not all(r["restore_ok"] for r in result.get("copy_reps", [])):
        sys.exit("a restored repository did not have the source's refs: the times above mean nothing")


if __name__ == "__main__":
    main()
