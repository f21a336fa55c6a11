"""Git's smart HTTP protocol, served by `git http-backend` run as a CGI program per request.

Only the smart protocol is served (ref advertisement with `?service=`, `git-upload-pack`,
`git-receive-pack`), as on the real forges. Access is decided here, the way the forges decide it:
anonymous requests for anything but a visible public repository get 401 with a Basic challenge
(so that git asks for credentials; a forge does not tell strangers whether a private repository
exists), rejected credentials get 401, and a valid token that may not see the repository gets 404.
Pushing needs a valid token with write access (`"write": false` in its world entry makes it
read-only: 403, as the forges answer), and refs the forge keeps for itself (`refs/pull/*` on
GitHub and Gitea, `refs/merge-requests/*` on GitLab) cannot be pushed: `receive.hideRefs` makes
git reject them with "deny updating a hidden ref", which is what the forges' own git says.

A repository the world lists but that has no directory on disk is an empty repository: fetching
from it sees no refs (served from one shared empty repository), and the first push creates it at
its place under DIR/git, as a push to a new repository on a forge does.
"""

import os
import subprocess
import threading
import zlib

from core import INVALID, Response, can_see

SERVICES = ("git-upload-pack", "git-receive-pack")


def empty_repo(root):
    """The shared empty bare repository behind unborn repositories, made once."""
    path = os.path.join(root, ".fakeforge", "empty.git")
    if not os.path.isdir(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + f".{os.getpid()}.{threading.get_ident()}"
        subprocess.run(["git", "init", "--quiet", "--bare", tmp], check=True)
        try:
            os.rename(tmp, path)
        except OSError:
            pass  # another thread won
    return path


def challenge(forge, message):
    return Response(401, message + "\n", [("WWW-Authenticate", f'Basic realm="{forge.realm}"')],
                    content_type="text/plain; charset=utf-8")


def not_found():
    return Response(404, "Repository not found.\n", content_type="text/plain; charset=utf-8")


def access(app, forge, req, repo, wiki, write, kind):
    """(refusal, identity): the answer refusing the request as the forge would, or None and who
    is asking. Shared by git and LFS requests."""
    entry = app.limiters[forge.name].injected_error(app.faults(forge), kind, req.method, req.path)
    if entry is not None:
        return Response(entry["status"], entry.get("body", f"injected {entry['status']}\n"),
                        list(entry.get("headers", {}).items()), content_type="text/plain; charset=utf-8"), None
    identity = forge.git_identity(req)
    if identity is INVALID:
        return challenge(forge, "Invalid username or token."), None
    if identity is None and (repo is None or repo.private or write):
        return challenge(forge, "Authentication required."), None
    if repo is None or not can_see(identity, repo):
        return not_found(), None
    # A push creates the wiki of a repository that has one enabled.
    if wiki and (not repo.has_wiki or not (write or repo.exists_on_disk(app.root, wiki=True))):
        return not_found(), None
    if write and not forge.may_push(repo, identity):
        return forge.push_denied(repo, identity), None
    return None, identity


def serve_git(handler, forge, req, target):
    repo, wiki, service_path = target
    if service_path.startswith("info/lfs/"):
        from lfs import serve_lfs  # lfs imports this module
        serve_lfs(handler, forge, req, repo, wiki, service_path[len("info/lfs/"):])
        return
    service = req.arg("service") if service_path == "info/refs" else service_path
    app = handler.app
    if service not in SERVICES or (service_path != "info/refs" and req.method != "POST"):
        denied = Response(404, "Not Found\n", content_type="text/plain; charset=utf-8")
    else:
        denied, identity = access(app, forge, req, repo, wiki, service == "git-receive-pack", "git")
    if denied is not None:
        handler.drain()
        handler.finish_response(denied, forge, "git", req.path, req.query_string, req.credentials.present)
        return

    path = repo.git_path(app.root, wiki)
    if not os.path.isdir(path):
        if service == "git-receive-pack":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            subprocess.run(["git", "init", "--quiet", "--bare", f"--initial-branch={repo.default_branch}", path],
                           check=True)
        else:
            path = empty_repo(app.root)
    run_backend(handler, forge, req, path, service_path, identity)


def run_backend(handler, forge, req, path, service_path, identity):
    headers = req.headers
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update({
        "GIT_PROJECT_ROOT": os.path.dirname(path),
        "PATH_INFO": "/" + os.path.basename(path) + "/" + service_path,
        "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": req.method,
        "QUERY_STRING": req.query_string,
        "REMOTE_ADDR": "127.0.0.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
    })
    # What GitHub allows: partial clones and fetching any reachable object; pushes, except to the
    # refs the forge keeps for itself (receive-pack only: fetches still see them).
    config = [("uploadpack.allowFilter", "true"), ("uploadpack.allowReachableSHA1InWant", "true"),
              ("http.receivepack", "true")] + [("receive.hideRefs", ref) for ref in forge.hidden_refs]
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    if identity is not None:
        env["REMOTE_USER"] = identity.login
    for header, var in (("Content-Type", "CONTENT_TYPE"), ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                        ("Git-Protocol", "HTTP_GIT_PROTOCOL")):
        if headers.get(header):
            env[var] = headers[header]
    chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
    length = int(headers.get("Content-Length") or 0)
    if not chunked and req.method == "POST":
        env["CONTENT_LENGTH"] = str(length)

    log_path = os.path.join(handler.app.root, "git-backend.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(["git", "http-backend"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log)
    sniffer = CommandSniffer(gzipped="gzip" in (headers.get("Content-Encoding") or "").lower())
    feeder = threading.Thread(target=feed, args=(handler.rfile, proc.stdin, chunked, length, sniffer), daemon=True)
    feeder.start()
    try:
        status, cgi_headers = read_cgi_headers(proc.stdout)
        # Protocol v2 asks for refs and for objects through the same POST: the log says which.
        command = sniffer.command() if req.method == "POST" else None
        fields = {"write": True} if req.method == "POST" and service_path == "git-receive-pack" else {}
        handler.app.log.write(forge=forge.name, kind="git", method=req.method, path=req.path, query=req.query_string,
                              status=status, token=req.credentials.present, command=command, **fields)
        handler.send_response(status)
        for key, value in cgi_headers:
            handler.send_header(key, value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    finally:
        feeder.join()
        proc.stdout.close()
        proc.wait()


class CommandSniffer:
    """The protocol v2 command (`ls-refs`, `fetch`) at the start of a request body, or `None`
    (protocol v0/v1, receive-pack)."""

    def __init__(self, gzipped):
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self.head = b""
        self.done = threading.Event()

    def see(self, chunk):
        if self.done.is_set():
            return
        try:
            self.head += self.inflate.decompress(chunk, 256) if self.inflate else chunk[:256]
        except zlib.error:
            self.done.set()
        if len(self.head) >= 64:
            self.done.set()

    def command(self):
        self.done.wait(5)
        head = self.head
        # The first pkt-line: four hex digits of length (themselves included), then the payload.
        try:
            length = int(head[:4], 16)
        except ValueError:
            return None
        line = head[4:length]
        if line.startswith(b"command="):
            return line[8:].rstrip(b"\n").decode("ascii", "replace")
        return None


def feed(rfile, stdin, chunked, length, sniffer=None):
    """Copy the request body into the CGI program: Content-Length bytes, or the decoded chunks of
    a chunked body (git sends large packs that way). Gzip bodies pass through untouched:
    http-backend inflates them itself (HTTP_CONTENT_ENCODING)."""
    see = sniffer.see if sniffer else (lambda _chunk: None)
    try:
        if chunked:
            while True:
                size_line = rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                copy(rfile, stdin, size, see)
                rfile.readline()
        else:
            copy(rfile, stdin, length, see)
    except (BrokenPipeError, ValueError):
        pass
    finally:
        if sniffer:
            sniffer.done.set()
        try:
            stdin.close()
        except BrokenPipeError:
            pass


def copy(src, dst, length, see=lambda _chunk: None):
    while length > 0:
        chunk = src.read(min(length, 65536))
        if not chunk:
            break
        see(chunk)
        length -= len(chunk)
        try:
            dst.write(chunk)
        except BrokenPipeError:
            # The backend gave up early; keep reading so the connection stays in step.
            dst = _Sink()


class _Sink:
    def write(self, _data):
        pass


def read_cgi_headers(stdout):
    status = 200
    headers = []
    while True:
        line = stdout.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        key, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
        value = value.strip()
        if key.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((key, value))
    return status, headers
