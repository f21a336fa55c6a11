"""Git LFS under each repository's git URL (`<repo>.git/info/lfs/...`), as git-lfs finds it by
itself: the batch API (`POST objects/batch`) with the `basic` transfer adapter, object transfers
at `objects/<oid>` (GET to download, PUT to upload; the body's SHA-256 and size are checked), and
an empty locking API (`locks/verify`, `locks`) so that pushes do not warn. Objects are stored
under DIR/lfs/<forge>/<owner path>/<name>/<oid[0:2]>/<oid[2:4]>/<oid>. Access follows the git
rules (githttp.access): downloads like fetches, uploads like pushes."""

import hashlib
import json
import os
import re
import tempfile

from core import Response
from githttp import access

LFS_JSON = "application/vnd.git-lfs+json"
OID = re.compile(r"^[0-9a-f]{64}$")


def lfs_json(status, body, headers=None):
    return Response(status, json.dumps(body), headers, content_type=LFS_JSON)


def object_path(root, forge, repo, wiki, oid):
    name = repo.name + (".wiki" if wiki else "")
    return os.path.join(root, "lfs", forge.name, *repo.owner.split("/"), name, oid[:2], oid[2:4], oid)


def serve_lfs(handler, forge, req, repo, wiki, rest):
    app = handler.app
    write = req.method == "PUT"
    body = b""
    if rest in ("objects/batch", "locks/verify") and req.method == "POST":
        body = b"".join(read_body(handler))
        if rest == "objects/batch":
            try:
                write = json.loads(body or b"{}").get("operation") == "upload"
            except ValueError:
                write = False
    elif req.method != "PUT":
        handler.drain()
    refusal, identity = access(app, forge, req, repo, wiki, bool(write), "lfs")
    if refusal is not None:
        if req.method == "PUT":
            handler.drain()
        if refusal.status == 401:
            refusal.headers.append(("LFS-Authenticate", refusal.header("WWW-Authenticate")))
        finish(handler, forge, req, refusal)
        return
    match rest.split("/"):
        case ["objects", "batch"] if req.method == "POST":
            finish(handler, forge, req, batch(handler, forge, req, repo, wiki, body))
        case ["objects", oid] if OID.match(oid) and req.method == "GET":
            download(handler, forge, req, object_path(app.root, forge, repo, wiki, oid))
        case ["objects", oid] if OID.match(oid) and req.method == "PUT":
            finish(handler, forge, req, upload(handler, object_path(app.root, forge, repo, wiki, oid), oid))
        case ["locks", "verify"] if req.method == "POST":
            finish(handler, forge, req, lfs_json(200, {"ours": [], "theirs": []}))
        case ["locks"] if req.method == "GET":
            finish(handler, forge, req, lfs_json(200, {"locks": []}))
        case _:
            if req.method == "PUT":
                handler.drain()
            finish(handler, forge, req, lfs_json(404, {"message": "Not Found"}))


def finish(handler, forge, req, response):
    handler.finish_response(response, forge, "lfs", req.path, req.query_string, req.credentials.present)


def batch(handler, forge, req, repo, wiki, body):
    try:
        request = json.loads(body)
    except ValueError:
        return lfs_json(422, {"message": "invalid batch request"})
    operation = request.get("operation")
    if operation not in ("download", "upload"):
        return lfs_json(422, {"message": f"unknown operation {operation!r}"})
    if "basic" not in request.get("transfers", ["basic"]):
        return lfs_json(422, {"message": "only the basic transfer adapter is served"})
    base = handler.app.base_url + req.path[: req.path.index("/info/lfs/")] + "/info/lfs/objects/"
    header = {"Authorization": req.headers["Authorization"]} if req.headers.get("Authorization") else {}
    objects = []
    for item in request.get("objects", []):
        oid, size = item.get("oid", ""), item.get("size", 0)
        entry = {"oid": oid, "size": size, "authenticated": True}
        if not OID.match(oid or ""):
            entry["error"] = {"code": 422, "message": "invalid object id"}
            objects.append(entry)
            continue
        path = object_path(handler.app.root, forge, repo, wiki, oid)
        present = os.path.isfile(path)
        action = {"href": base + oid, "header": header, "expires_in": 3600}
        if operation == "download":
            if present:
                entry["actions"] = {"download": action}
            else:
                entry["error"] = {"code": 404, "message": "Object does not exist"}
        elif not present:
            entry["actions"] = {"upload": action}
        objects.append(entry)
    return lfs_json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})


def download(handler, forge, req, path):
    if not os.path.isfile(path):
        finish(handler, forge, req, lfs_json(404, {"message": "Object does not exist"}))
        return
    size = os.path.getsize(path)
    handler.app.log.write(forge=forge.name, kind="lfs", method=req.method, path=req.path, query=req.query_string,
                          status=200, token=req.credentials.present)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(size))
    handler.end_headers()
    with open(path, "rb") as f:
        while chunk := f.read(65536):
            handler.wfile.write(chunk)


def upload(handler, path, oid):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), delete=False) as tmp:
        for chunk in read_body(handler):
            digest.update(chunk)
            tmp.write(chunk)
    if digest.hexdigest() != oid:
        os.remove(tmp.name)
        return lfs_json(422, {"message": "object content does not match its id"})
    os.replace(tmp.name, path)
    return Response(200, b"", content_type=None)


def read_body(handler):
    """The request body in chunks, by Content-Length or chunked transfer encoding."""
    rfile = handler.rfile
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        while True:
            size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            remaining = size
            while remaining:
                chunk = rfile.read(min(remaining, 65536))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
            rfile.readline()
    else:
        remaining = int(handler.headers.get("Content-Length") or 0)
        while remaining:
            chunk = rfile.read(min(remaining, 65536))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
