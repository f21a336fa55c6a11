"""The forge-independent half of the fake forge: the world (world.json), identities, pagination,
rate limits and injected faults, the request log, and the HTTP server that routes each request to
a forge module (github, gitlab, bitbucket, gitea) or to git's smart HTTP (githttp).

Forge modules provide one object each (see `Forge` below) that turns world.json into API answers
in that forge's real shapes; this module decides who is asking, whether a fault fires, and how the
answer is framed (ETag, 304, rate-limit headers).
"""

import base64
import binascii
import datetime
import email.utils
import fnmatch
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Timestamps the world does not give are spread from here, one hour per position in the world's
# list, so that "created" ordering is the world's order and answers are stable across runs.
EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


def stable_id(*parts):
    """A positive id derived from names, stable across runs and world rewrites."""
    return zlib.crc32(":".join(parts).encode()) % 90_000_000 + 10_000_000


def stable_uuid(*parts):
    digest = hashlib.sha256(":".join(parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def parse_time(value):
    """A world timestamp (ISO 8601, `Z` allowed) as an aware datetime."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def git_activity(path):
    """When refs of the repository at `path` last changed (newest mtime of HEAD, packed-refs and
    refs/), or None when there is no repository there. Stands in for a forge's pushed_at."""
    if not os.path.isdir(path):
        return None
    newest = 0.0
    for name in ("HEAD", "packed-refs"):
        try:
            newest = max(newest, os.stat(os.path.join(path, name)).st_mtime)
        except OSError:
            pass
    for dirpath, _dirs, files in os.walk(os.path.join(path, "refs")):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                pass
    return utc(newest) if newest else None


def disk_kib(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total // 1024


class Repo:
    """One repository of a forge's world section, normalised: `owner` is the owner's login, the
    GitLab namespace path or the Bitbucket workspace; `raw` keeps the world entry for the fields
    only one forge knows."""

    def __init__(self, forge, owner, name, raw, index, private, has_wiki, fork, default_branch):
        self.forge = forge
        self.owner = owner
        self.name = name
        self.raw = raw
        self.index = index
        self.private = private
        self.has_wiki = has_wiki
        self.fork = fork
        self.default_branch = default_branch
        self.full_name = f"{owner}/{name}"
        self.key = f"{forge}:{self.full_name}"
        self.id = raw.get("id") or stable_id(forge, "repo", self.full_name)
        self.archived = bool(raw.get("archived", False))
        self.topics = list(raw.get("topics", []))
        self.description = raw.get("description", "")
        self.created = parse_time(raw["created_at"]) if "created_at" in raw else EPOCH + datetime.timedelta(hours=index)

    def git_path(self, root, wiki=False):
        return os.path.join(root, "git", self.forge, *self.owner.split("/"), self.name + (".wiki.git" if wiki else ".git"))

    def pushed(self, root):
        """The world's `pushed_at`, else when the repository's refs last changed on disk, else
        its creation time."""
        if "pushed_at" in self.raw:
            return parse_time(self.raw["pushed_at"])
        return git_activity(self.git_path(root)) or self.created

    def updated(self, root):
        if "updated_at" in self.raw:
            return parse_time(self.raw["updated_at"])
        return max(self.created, self.pushed(root))

    def size_kib(self, root):
        path = self.git_path(root)
        return disk_kib(path) if os.path.isdir(path) else 0

    def exists_on_disk(self, root, wiki=False):
        return os.path.isdir(self.git_path(root, wiki))


class Identity:
    """Who a request speaks for: a valid token's login, its deny patterns."""

    def __init__(self, login, deny=(), token=None, write=True):
        self.login = login
        self.deny = list(deny)
        self.token = token
        # A token whose world entry says `"write": false` (a read-only token: fine-grained
        # without write permissions, a classic one without `repo`, GitLab `read_api`...).
        self.write = bool(write)

    def denies(self, key):
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.deny)


# A request that carried credentials the forge rejects (unknown or expired token).
INVALID = object()


def can_see(identity, repo):
    """Public repositories are visible to everybody, private ones to any valid token; a token's
    `deny` patterns hide repositories from it."""
    if identity is not None and identity.denies(repo.key):
        return False
    return identity is not None or not repo.private


class World:
    """world.json, re-read whenever its bytes change, with the fake's own writes on top.

    The file is small and read on every request: comparing bytes catches a rewrite that a
    timestamp of coarse granularity would miss. What clients create through the APIs (repositories,
    issues, comments, releases...) is kept as a journal of edits to the world's JSON (`Edit`) and
    replayed over the file whenever it changes, so a test may rewrite world.json (add a fault,
    a token) without losing what a restore created. The journal is in memory (it lives as long as
    the server) and mirrored to DIR/state.jsonl (one edit a line, appended) for people reading a
    failed test."""

    def __init__(self, root):
        self.path = os.path.join(root, "world.json")
        self.state_path = os.path.join(root, "state.jsonl")
        self.lock = threading.Lock()
        self.raw_bytes = None
        self.file_data = {}
        self.data = {}
        self.journal = []
        self.generation = 0
        # Changes only when world.json does: caches keyed on what the file says (accounts, tokens)
        # start over then; caches of one repository may survive writes to another.
        self.file_generation = 0
        self.error = None

    def current(self):
        """(generation, data): the generation changes whenever the content does, by a rewrite of
        world.json or by a write through an API."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raw = b"{}"
        with self.lock:
            if raw != self.raw_bytes:
                try:
                    self.file_data = json.loads(raw or b"{}")
                    self.error = None
                except ValueError as err:
                    # A half-written file is impossible (the launcher renames), so this is a test
                    # bug: answer 500 until it is fixed, with the reason in the log.
                    self.error = f"world.json is not valid JSON: {err}"
                self.data = replay(self.file_data, self.journal)
                self.raw_bytes = raw
                self.generation += 1
                self.file_generation += 1
            return self.generation, self.data

    def apply(self, edits):
        """Apply `edits` (a list of `Edit` dicts) to the current world and remember them. Raises
        LookupError, changing nothing, when one does not apply. Callers hold `App.write_lock`
        from the checks they make against the world to this call, so that writes are serial."""
        self.current()
        with self.lock:
            data = self.data
            for edit in edits:
                data = apply_edit(data, edit)
            self.data = data
            self.journal.extend(edits)
            self.generation += 1
            # Appended, not rewritten: a restore of thousands of items must not cost the square.
            with open(self.state_path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(edit) + "\n" for edit in edits)

    def token(self, token, forge):
        """The identity of `token` on `forge`, or INVALID for an unknown, expired or foreign one."""
        _, data = self.current()
        entry = data.get("tokens", {}).get(token)
        if entry is None or entry.get("expired", False):
            return INVALID
        if "forges" in entry and forge not in entry["forges"]:
            return INVALID
        return Identity(entry.get("login", "user"), entry.get("deny", []), token, entry.get("write", True))


# An edit of the world's JSON, as the write endpoints record them:
#   {"path": [step, ...], "append": item}  append `item` to the list at `path` (made when missing);
#   {"path": [step, ...], "set": {...}}    set these keys of the object at `path`.
# A step is an object key (a string) or a matcher (an object): the first element of a list whose
# keys have those values. Edits copy the containers along their path and share the rest, so a
# reader holding the previous world sees it whole, and a repository's entry keeps its identity
# while other repositories change.


def apply_edit(data, edit):
    def walk(node, steps):
        if not steps:
            if "append" in edit:
                return list(node or []) + [edit["append"]]
            merged = dict(node or {})
            merged.update(edit["set"])
            return merged
        step, rest = steps[0], steps[1:]
        if isinstance(step, str):
            copy = dict(node or {})
            child = copy.get(step)
            if child is None and rest and isinstance(rest[0], dict):
                child = []
            copy[step] = walk(child, rest)
            return copy
        for index, item in enumerate(node or []):
            if isinstance(item, dict) and all(item.get(k) == v for k, v in step.items()):
                copy = list(node)
                copy[index] = walk(item, rest)
                return copy
        raise LookupError(f"nothing matches {step} in the world")

    return walk(data, edit["path"])


def replay(data, journal):
    """`data` with the journal's edits applied; an edit whose target the world no longer has (a
    rewrite removed the repository) is skipped."""
    for edit in journal:
        try:
            data = apply_edit(data, edit)
        except (LookupError, TypeError, AttributeError):
            pass
    return data


class Limiter:
    """Rate limits and injected errors of one forge. Counted requests are API requests answered
    with something other than 304. State starts over when the forge's `faults` change."""

    DEFAULT_LIMIT = 5000
    WINDOW = 3600

    def __init__(self):
        self.lock = threading.Lock()
        self.reset_state(None)

    def reset_state(self, faults_json):
        self.faults_json = faults_json
        self.used = 0
        self.window_reset = int(time.time()) + self.WINDOW
        self.blocked_until = None
        self.secondary_seen = 0
        self.secondary_fired = False
        self.error_counts = {}
        self.writes_seen = 0
        self.writes_blocked_until = None
        self.writes_fired = 0

    def sync(self, faults):
        encoded = json.dumps(faults, sort_keys=True)
        if encoded != self.faults_json:
            self.reset_state(encoded)

    def injected_error(self, faults, kind, method, path):
        """The first `errors` entry that matches and has fires left, or None."""
        with self.lock:
            self.sync(faults)
            for i, entry in enumerate(faults.get("errors", [])):
                if entry.get("kind", "api") not in (kind, "any"):
                    continue
                if "method" in entry and entry["method"].upper() != method:
                    continue
                if not re.search(entry["path"], path):
                    continue
                times = entry.get("times", 1)
                fired = self.error_counts.get(i, 0)
                if 0 <= times <= fired:
                    continue
                self.error_counts[i] = fired + 1
                return entry
            return None

    def count(self, faults, now):
        """Count one request. Returns ("ok", info), ("primary", info) or ("secondary", seconds);
        info is (limit, remaining, used, reset_epoch) for rate-limit headers."""
        with self.lock:
            self.sync(faults)
            primary = faults.get("rate_limit")
            if primary is None:
                if now >= self.window_reset:
                    self.used = 0
                    self.window_reset = int(now) + self.WINDOW
            elif self.blocked_until is not None and now >= self.blocked_until:
                self.used = 0
                self.blocked_until = None
            limit = primary.get("after", 0) if primary else self.DEFAULT_LIMIT
            if primary is not None:
                if self.blocked_until is None and self.used >= limit:
                    self.blocked_until = now + primary.get("reset_seconds", 60)
                if self.blocked_until is not None:
                    return "primary", (limit, 0, self.used, int(-(-self.blocked_until // 1)))
            secondary = faults.get("secondary")
            if secondary is not None and not self.secondary_fired:
                if self.secondary_seen >= secondary.get("after", 0):
                    self.secondary_fired = True
                    return "secondary", secondary
                self.secondary_seen += 1
            self.used += 1
            reset = self.window_reset
            if primary is not None:
                reset = int(now) + primary.get("reset_seconds", 60)
            return "ok", (limit, max(limit - self.used, 0), self.used, reset)

    def count_write(self, faults, now):
        """Count one write (an API request other than GET/HEAD) against the `writes` fault, the
        content-creation limit: None when it may go on, else the fault (its `retry_after`...).
        After `after` writes the next is refused, and so is every write for `retry_after`
        seconds; then the count starts over. `times` (default 1; negative: always) blocks at
        most."""
        with self.lock:
            self.sync(faults)
            fault = faults.get("writes")
            if fault is None:
                return None
            if self.writes_blocked_until is not None:
                if now < self.writes_blocked_until:
                    return fault
                self.writes_blocked_until = None
                self.writes_seen = 0
            times = fault.get("times", 1)
            if (times < 0 or self.writes_fired < times) and self.writes_seen >= fault.get("after", 0):
                self.writes_fired += 1
                self.writes_blocked_until = now + fault.get("retry_after", 60)
                return fault
            self.writes_seen += 1
            return None

    def peek(self, faults, now):
        """Rate-limit header values without counting (for 304s and errors)."""
        with self.lock:
            self.sync(faults)
            primary = faults.get("rate_limit")
            limit = primary.get("after", 0) if primary else self.DEFAULT_LIMIT
            if primary is not None and self.blocked_until is not None and now < self.blocked_until:
                return (limit, 0, self.used, int(-(-self.blocked_until // 1)))
            reset = self.window_reset if primary is None else int(now) + primary.get("reset_seconds", 60)
            return (limit, max(limit - self.used, 0), self.used, reset)


class RequestLog:
    """requests.jsonl: one JSON object per request, written before the answer's last byte leaves,
    so a client that has its answer also finds its line. Never holds a token."""

    def __init__(self, root):
        self.path = os.path.join(root, "requests.jsonl")
        self.lock = threading.Lock()

    def write(self, **fields):
        fields["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        line = json.dumps(fields, sort_keys=True) + "\n"
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)


class Response:
    def __init__(self, status, body=b"", headers=None, content_type="application/json; charset=utf-8"):
        self.status = status
        self.headers = list(headers or [])
        if isinstance(body, (dict, list)):
            body = json.dumps(body, indent=None, separators=(",", ":")).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.body = body
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def json_response(status, body, headers=None):
    return Response(status, body, headers)


class Credentials:
    """What a request's headers offer: a bearer-style token, and/or Basic user and password."""

    def __init__(self, headers):
        self.token = None
        self.user = None
        self.password = None
        self.present = False
        auth = headers.get("Authorization")
        if auth:
            self.present = True
            scheme, _, value = auth.strip().partition(" ")
            scheme = scheme.lower()
            value = value.strip()
            if scheme in ("bearer", "token"):
                self.token = value
            elif scheme == "basic":
                try:
                    decoded = base64.b64decode(value, validate=True).decode()
                    self.user, _, self.password = decoded.partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    pass
        private = headers.get("PRIVATE-TOKEN")
        if private:
            self.present = True
            self.private_token = private
        else:
            self.private_token = None


class Request:
    """A parsed request: the path split into raw (still percent-encoded) segments after the
    forge's API base or git prefix, the query as ordered pairs."""

    def __init__(self, handler, path, query):
        self.handler = handler
        self.method = handler.command
        self.headers = handler.headers
        self.path = path
        self.query_string = query
        self.query = urllib.parse.parse_qsl(query, keep_blank_values=True)
        self.credentials = Credentials(handler.headers)
        self.identity = None
        self.body = b""

    @property
    def write(self):
        """Whether this request may change something (the API methods other than GET/HEAD)."""
        return self.method not in ("GET", "HEAD")

    def json(self):
        """The request body as JSON: a dict (or list), or None when it is not JSON at all."""
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            return None

    def arg(self, name, default=None):
        for key, value in self.query:
            if key == name:
                return value
        return default

    def int_arg(self, name, default, minimum=1):
        try:
            value = int(self.arg(name, default))
        except (TypeError, ValueError):
            return default
        return value if value >= minimum else default


def page_slice(items, page, per_page):
    """(items of `page`, number of the last page); the last page is 1 for an empty list."""
    last = max(1, -(-len(items) // per_page))
    start = (page - 1) * per_page
    return items[start:start + per_page], last


def page_url(base, path, query, updates):
    """An absolute URL for `path` with `query` pairs, the keys in `updates` replaced in place (or
    appended when absent)."""
    pairs = []
    seen = set()
    for key, value in query:
        if key in updates:
            if key in seen:
                continue
            seen.add(key)
            value = str(updates[key])
        pairs.append((key, value))
    for key, value in updates.items():
        if key not in seen:
            pairs.append((key, str(value)))
    return f"{base}{path}?{urllib.parse.urlencode(pairs)}"


def etag_of(body):
    return 'W/"' + hashlib.sha256(body).hexdigest() + '"'


def not_modified_since(if_modified_since, last_modified):
    """Whether an answer stamped `last_modified` (an HTTP date) is no newer than the request's
    `If-Modified-Since`; false when either is missing or unreadable."""
    if not if_modified_since or not last_modified:
        return False
    try:
        return email.utils.parsedate_to_datetime(last_modified) <= email.utils.parsedate_to_datetime(
            if_modified_since)
    except (TypeError, ValueError):
        return False


def etag_matches(if_none_match, etag):
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    want = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == want for tag in if_none_match.split(","))


class Forge:
    """What a forge module provides. `api_base` is the API's path prefix ("/github/api/v3");
    `prefix` the forge's ("/github")."""

    name = ""
    prefix = ""
    api_base = ""
    realm = ""
    etags = False
    # Refs a push may not create or update (receive.hideRefs).
    hidden_refs = ()

    def __init__(self, app):
        self.app = app

    # Helpers shared by the forges.
    def section(self):
        _, data = self.app.world.current()
        return data.get(self.name, {})

    def url(self, path):
        return self.app.base_url + path

    def ssh_url(self, full_name, default):
        """The SSH clone URL of `full_name`: under world.json's `"ssh": {"<forge>": BASE}` when the
        test runs an sshd that serves the repositories (`BASE/<full_name>.git`), else `default`."""
        _, data = self.app.world.current()
        base = data.get("ssh", {}).get(self.name)
        return f"{base.rstrip('/')}/{full_name}.git" if base else default

    def token_identity(self, token):
        """The identity of a token that was sent; an empty one is invalid, not anonymous."""
        return self.app.world.token(token, self.name) if token else INVALID

    def default_identity(self, req):
        """None (anonymous), an Identity, or INVALID: a bearer-style token, or Basic with the token
        as password (or as user, with an empty or `x-oauth-basic` password)."""
        creds = req.credentials
        if creds.token is not None:
            return self.token_identity(creds.token)
        if creds.user is not None:
            if creds.password in ("", "x-oauth-basic"):
                return self.token_identity(creds.user)
            return self.token_identity(creds.password)
        return INVALID if creds.present else None

    # To override.
    def api_identity(self, req):
        return self.default_identity(req)

    def git_identity(self, req):
        return self.default_identity(req)

    def handle_api(self, req, segments):
        raise NotImplementedError

    def is_download(self, segments):
        """Whether `segments` (after the forge prefix) name a file download outside the API."""
        return False

    def download(self, req, identity, segments):
        """The answer to a download URL; `identity` may be None or INVALID."""
        raise NotImplementedError

    def git_target(self, segments):
        """(repo, wiki, service_path) for a git URL, or None when `segments` is not one. `repo`
        is None for a repository the world does not have."""
        raise NotImplementedError

    def unauthorized(self):
        raise NotImplementedError

    def not_found(self, what="Not Found"):
        raise NotImplementedError

    def rate_limited(self, info):
        raise NotImplementedError

    def secondary_limited(self, fault):
        return json_response(fault.get("status", 429), {"message": "Too Many Requests"},
                             [("Retry-After", str(fault.get("retry_after", 1)))])

    def may_push(self, repo, identity):
        """Whether `identity` may push to `repo` (git and LFS uploads)."""
        return identity is not None and identity.write

    def push_denied(self, repo, identity):
        return Response(403, "Permission denied.\n", content_type="text/plain; charset=utf-8")

    def writes_limited(self, fault):
        """The answer to a write refused by the `writes` fault (content-creation limits)."""
        return self.secondary_limited(fault)

    def api_segments(self, raw_path):
        """The segments after the API base when `raw_path` is an API path, else None."""
        if raw_path == self.api_base or raw_path.startswith(self.api_base + "/"):
            return raw_path[len(self.api_base):].split("/")[1:]
        return None

    def injected(self, entry):
        status = entry["status"]
        body = entry.get("body", {"message": f"injected {status}"})
        return json_response(status, body, list(entry.get("headers", {}).items()))

    def conditional(self, segments):
        """Whether the answer to the API path `segments` carries an ETag and honours
        `If-None-Match` (and `If-Modified-Since`) with 304s."""
        return self.etags

    def decorate(self, req, response, info):
        """Add the headers every API answer of this forge carries (rate limits...)."""


class App:
    def __init__(self, root, port=0):
        self.root = os.path.abspath(root)
        self.world = World(self.root)
        self.log = RequestLog(self.root)
        self.port = port
        self.base_url = ""
        self.forges = {}
        self.limiters = {}
        # Held by a write from its checks against the world to its edit, so that numbers are
        # handed out in sequence and a name is never taken twice.
        self.write_lock = threading.RLock()
        self.next_id = 1_000_000_000

    def new_id(self):
        """An id for an item a client creates: unique in the server's life, above the ids the
        world derives from names (below 100,000,000)."""
        with self.write_lock:
            self.next_id += 1
            return self.next_id

    def add(self, forge_class):
        forge = forge_class(self)
        self.forges[forge.prefix.strip("/")] = forge
        self.limiters[forge.name] = Limiter()

    def faults(self, forge):
        _, data = self.world.current()
        return data.get("faults", {}).get(forge.name, {})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeforge"
    sys_version = ""
    # Git keeps connections open between requests of one fetch.
    timeout = 120
    # An answer goes out as headers then body; with Nagle's algorithm on a kept-alive connection
    # the body waits for the client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    @property
    def app(self):
        return self.server.app

    def dispatch(self):
        raw_path, _, query = self.path.partition("?")
        segments = raw_path.split("/")[1:]
        forge = self.app.forges.get(segments[0]) if segments else None
        if forge is None:
            self.drain()
            self.finish_response(Response(404, "not a forge of the fake forge\n", content_type="text/plain"),
                                 None, "other", raw_path, query, False)
            return
        req = Request(self, raw_path, query)
        _, data = self.app.world.current()
        if self.app.world.error:
            self.drain()
            self.finish_response(json_response(500, {"message": self.app.world.error}), forge, "api", raw_path,
                                 query, req.credentials.present)
            return
        api_segments = forge.api_segments(raw_path)
        if api_segments is not None:
            self.serve_api(forge, req, api_segments)
            return
        if forge.is_download(segments[1:]):
            self.serve_download(forge, req, segments[1:])
            return
        target = forge.git_target(segments[1:])
        if target is not None:
            from githttp import serve_git  # imported late: githttp imports this module
            serve_git(self, forge, req, target)
            return
        self.drain()
        self.finish_response(forge.not_found(), forge, "api", raw_path, query, req.credentials.present)

    def read_body(self, limit=1 << 30):
        """The request body (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = min(int(self.headers.get("Content-Length") or 0), limit)
        return self.rfile.read(length) if length > 0 else b""

    def drain(self):
        """Read and drop a request body so the connection stays usable."""
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def serve_api(self, forge, req, segments):
        if req.write:
            req.body = self.read_body()
        else:
            self.drain()
        limiter = self.app.limiters[forge.name]
        faults = self.app.faults(forge)
        now = time.time()
        sent = req.credentials.present
        entry = limiter.injected_error(faults, "api", req.method, req.path)
        if entry is not None:
            response = forge.injected(entry)
            forge.decorate(req, response, limiter.peek(faults, now))
            self.finish_response(response, forge, "api", req.path, req.query_string, sent, req.write)
            return
        identity = forge.api_identity(req)
        if identity is INVALID:
            response = forge.unauthorized()
            forge.decorate(req, response, limiter.peek(faults, now))
            self.finish_response(response, forge, "api", req.path, req.query_string, sent, req.write)
            return
        req.identity = identity
        if req.write:
            self.serve_write(forge, req, segments, limiter, faults, now)
            return
        response = forge.handle_api(req, segments)
        if forge.conditional(segments) and response.status == 200:
            etag = etag_of(response.body)
            response.headers.append(("ETag", etag))
            # If-None-Match, when sent, decides alone (RFC 9110 13.2.2).
            if_none_match = self.headers.get("If-None-Match")
            if (etag_matches(if_none_match, etag) if if_none_match is not None
                    else not_modified_since(self.headers.get("If-Modified-Since"), response.header("Last-Modified"))):
                not_modified = Response(304, b"", [h for h in response.headers if h[0] != "Content-Type"],
                                        content_type=None)
                forge.decorate(req, not_modified, limiter.peek(faults, now))
                self.finish_response(not_modified, forge, "api", req.path, req.query_string, sent)
                return
        outcome, info = limiter.count(faults, now)
        if outcome == "primary":
            response = forge.rate_limited(info)
        elif outcome == "secondary":
            response = forge.secondary_limited(info)
            info = limiter.peek(faults, now)
        forge.decorate(req, response, info)
        self.finish_response(response, forge, "api", req.path, req.query_string, sent)

    def serve_write(self, forge, req, segments, limiter, faults, now):
        """A write is counted, and may be refused by a limit, before it takes effect: a refused
        write changes nothing."""
        outcome, info = limiter.count(faults, now)
        if outcome == "primary":
            response = forge.rate_limited(info)
        elif outcome == "secondary":
            response = forge.secondary_limited(info)
            info = limiter.peek(faults, now)
        else:
            fault = limiter.count_write(faults, now)
            response = forge.writes_limited(fault) if fault is not None else forge.handle_api(req, segments)
        forge.decorate(req, response, info)
        self.finish_response(response, forge, "api", req.path, req.query_string, req.credentials.present, True)

    def serve_download(self, forge, req, segments):
        """A file outside the API (release assets): not rate-limited; injected errors of kind
        `download` apply."""
        self.drain()
        limiter = self.app.limiters[forge.name]
        entry = limiter.injected_error(self.app.faults(forge), "download", req.method, req.path)
        if entry is not None:
            response = Response(entry["status"], entry.get("body", f"injected {entry['status']}\n"),
                                list(entry.get("headers", {}).items()), content_type="text/plain; charset=utf-8")
        else:
            response = forge.download(req, forge.api_identity(req), segments)
        self.finish_response(response, forge, "download", req.path, req.query_string, req.credentials.present)

    def finish_response(self, response, forge, kind, path, query, token_sent, write=False):
        fields = {"write": True} if write else {}
        self.app.log.write(forge=forge.name if forge else None, kind=kind, method=self.command, path=path,
                           query=query, status=response.status, token=token_sent, **fields)
        self.send_response(response.status)
        for key, value in response.headers:
            self.send_header(key, value)
        if response.status != 304:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.status != 304:
            self.wfile.write(response.body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app):
        # Loopback only, whatever the caller asks: the fake forge holds test tokens.
        super().__init__(("127.0.0.1", app.port), Handler)
        self.app = app
        app.port = self.server_address[1]
        app.base_url = f"http://127.0.0.1:{app.port}"


def rfc3339(dt, millis=False):
    if millis:
        return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
            f"{dt.microsecond // 1000:03d}Z"
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def quote(segment):
    return urllib.parse.quote(segment, safe="")


def unquote(segment):
    return urllib.parse.unquote(segment)
