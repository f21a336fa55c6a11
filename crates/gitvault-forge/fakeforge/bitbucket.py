"""Bitbucket Cloud's REST API (/2.0), in the shapes of bitbucket-cloud-openapi3.yml: `repository`
(with `links.clone`, `mainbranch`, `parent`, `project`, `workspace`), `workspace`, and the
`paginated_repositories` envelope (`pagelen` default 10, at most 100; `page`, `size`, `values`,
`next`, `previous`). Errors are `{"type": "error", "error": {"message": ...}}`.

Credentials: `Authorization: Bearer TOKEN`, Basic `x-token-auth:TOKEN`, or Basic
`USER:API-TOKEN` for a pair listed in world.json's `bitbucket_users` (the API token is also looked
up in `tokens`, for its `deny` list; otherwise it may see everything as USER)."""

import time

from bitbucket_meta import Metadata
from core import (EPOCH, INVALID, Forge, Identity, Repo, can_see, json_response, page_slice, page_url, stable_uuid,
                  unquote)

DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100


def bb_time(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


class Bitbucket(Forge):
    name = "bitbucket"
    prefix = "/bitbucket"
    api_base = "/bitbucket/2.0"
    realm = "Bitbucket.org HTTP"

    def __init__(self, app):
        super().__init__(app)
        self.meta = Metadata(self)

    def conditional(self, segments):
        # A repository and its metadata (bitbucket_meta.py) answer with ETags and 304s; the
        # workspace listings do not.
        return len(segments) >= 3 and segments[0] == "repositories"

    # The world.

    def workspaces(self):
        """slug -> entry; workspaces of repositories exist even when not listed."""
        out = {}
        for entry in self.section().get("workspaces", []):
            if isinstance(entry, str):
                out[entry] = {"slug": entry}
            else:
                out[entry["slug"]] = dict(entry)
        for repo in self.section().get("repos", []):
            out.setdefault(repo["workspace"], {"slug": repo["workspace"]})
        return out

    def find_workspace(self, key):
        for slug, entry in self.workspaces().items():
            if key.lower() == slug.lower() or key == "{" + stable_uuid("bitbucket", "workspace", slug) + "}":
                return slug, entry
        return None, None

    def repos(self):
        return [Repo("bitbucket", raw["workspace"], raw["slug"], raw, index,
                     private=bool(raw.get("is_private", False)), has_wiki=bool(raw.get("has_wiki", False)),
                     fork=bool(raw.get("fork", False) or raw.get("parent")),
                     default_branch=raw.get("mainbranch", "main"))
                for index, raw in enumerate(self.section().get("repos", []))]

    def find_repo(self, workspace, slug):
        for repo in self.repos():
            if repo.owner.lower() == workspace.lower() and (
                    repo.name.lower() == slug.lower() or slug == "{" + self.uuid(repo) + "}"):
                return repo
        return None

    def uuid(self, repo):
        return stable_uuid("bitbucket", "repo", repo.full_name)

    def git_target(self, segments):
        # git/WORKSPACE/REPO.git/info/refs | git-upload-pack | git-receive-pack
        if len(segments) < 4 or segments[0] != "git" or not segments[2].endswith(".git"):
            return None
        return self.find_repo(unquote(segments[1]), unquote(segments[2][: -len(".git")])), False, \
            "/".join(segments[3:])

    # Auth.

    def identity_from_basic(self, user, password):
        if user == "x-token-auth":
            return self.token_identity(password)
        _, data = self.app.world.current()
        if data.get("bitbucket_users", {}).get(user) == password and password:
            known = self.token_identity(password)
            return known if isinstance(known, Identity) else Identity(user, [], password)
        return INVALID

    def api_identity(self, req):
        creds = req.credentials
        if creds.token:
            return self.token_identity(creds.token)
        if creds.user is not None:
            return self.identity_from_basic(creds.user, creds.password)
        return INVALID if creds.present else None

    git_identity = api_identity

    # Shapes.

    def link(self, path):
        return {"href": self.url(path)}

    def workspace_shape(self, slug, entry):
        uuid = "{" + stable_uuid("bitbucket", "workspace", slug) + "}"
        api = f"{self.api_base}/workspaces/{slug}"
        return {
            "type": "workspace", "uuid": uuid, "name": entry.get("name", slug), "slug": slug,
            "is_private": bool(entry.get("is_private", False)), "created_on": bb_time(EPOCH),
            "links": {"avatar": self.link(f"/bitbucket/workspaces/{slug}/avatar"), "html": self.link(f"/bitbucket/{slug}/"),
                      "members": self.link(api + "/members"), "owners": self.link(api + "/members?q=permission%3D%22owner%22"),
                      "projects": self.link(api + "/projects"), "repositories": self.link(f"{self.api_base}/repositories/{slug}"),
                      "snippets": self.link(f"{self.api_base}/snippets/{slug}"), "self": self.link(api)},
        }

    def owner_shape(self, slug):
        uuid = "{" + stable_uuid("bitbucket", "workspace", slug) + "}"
        return {"type": "team", "display_name": self.workspaces().get(slug, {}).get("name", slug), "uuid": uuid,
                "username": slug,
                "links": {"self": self.link(f"{self.api_base}/workspaces/{uuid}"),
                          "html": self.link(f"/bitbucket/{uuid}/"), "avatar": self.link(f"/bitbucket/workspaces/{slug}/avatar")}}

    def repo_ref(self, repo):
        """The short form of a repository, as in `parent`."""
        api = f"{self.api_base}/repositories/{repo.full_name}"
        return {"type": "repository", "full_name": repo.full_name, "name": repo.raw.get("name", repo.name),
                "uuid": "{" + self.uuid(repo) + "}",
                "links": {"self": self.link(api), "html": self.link(f"/bitbucket/{repo.full_name}"),
                          "avatar": self.link(f"/bitbucket/{repo.full_name}/avatar")}}

    def repo_shape(self, repo):
        root = self.app.root
        raw = repo.raw
        api = f"{self.api_base}/repositories/{repo.full_name}"
        host = self.app.base_url.removeprefix("http://").split(":")[0]
        key = raw.get("project", "PROJ")
        slug, entry = self.find_workspace(repo.owner)
        body = self.repo_ref(repo)
        body["links"].update({
            "pullrequests": self.link(api + "/pullrequests"), "commits": self.link(api + "/commits"),
            "forks": self.link(api + "/forks"), "watchers": self.link(api + "/watchers"),
            "branches": self.link(api + "/refs/branches"), "tags": self.link(api + "/refs/tags"),
            "downloads": self.link(api + "/downloads"), "source": self.link(api + "/src"),
            "hooks": self.link(api + "/hooks"),
            "clone": [{"name": "https", "href": self.url(f"/bitbucket/git/{repo.full_name}.git")},
                      {"name": "ssh", "href": self.ssh_url(repo.full_name, f"git@{host}:{repo.full_name}.git")}],
        })
        body.update({
            "slug": repo.name, "description": repo.description, "scm": "git", "website": None,
            "owner": self.owner_shape(repo.owner),
            "workspace": {k: v for k, v in self.workspace_shape(slug, entry).items()
                          if k in ("type", "uuid", "name", "slug", "links")},
            "is_private": repo.private, "project": {
                "type": "project", "key": key, "uuid": "{" + stable_uuid("bitbucket", "project", repo.owner, key) + "}",
                "name": key, "links": {"self": self.link(f"{self.api_base}/workspaces/{repo.owner}/projects/{key}"),
                                       "html": self.link(f"/bitbucket/{repo.owner}/workspace/projects/{key}"),
                                       "avatar": self.link(f"/bitbucket/{repo.owner}/projects/{key}/avatar")}},
            "fork_policy": "allow_forks", "created_on": bb_time(repo.created),
            "updated_on": bb_time(repo.updated(root)), "size": repo.size_kib(root) * 1024,
            "language": raw.get("language", ""), "uuid": "{" + self.uuid(repo) + "}",
            "mainbranch": {"name": repo.default_branch, "type": "branch"}, "override_settings": {
                "default_merge_strategy": True, "branching_model": True},
            "has_issues": bool(raw.get("has_issues", False)), "has_wiki": repo.has_wiki,
        })
        parent = raw.get("parent")
        if parent:
            upstream = self.find_repo(*parent.split("/", 1))
            if upstream is not None:
                body["parent"] = self.repo_ref(upstream)
        return body

    # Errors.

    def error(self, status, message, headers=None):
        return json_response(status, {"type": "error", "error": {"message": message}}, headers)

    def unauthorized(self):
        return self.error(401, "Token is invalid, expired, or not supported for this endpoint.")

    def not_found(self, what="Resource not found"):
        return self.error(404, what)

    def rate_limited(self, info):
        _limit, _remaining, _used, reset = info
        return self.error(429, "Rate limit for this resource has been exceeded",
                          [("Retry-After", str(max(1, reset - int(time.time()))))])

    def secondary_limited(self, fault):
        return self.error(fault.get("status", 429), "Rate limit for this resource has been exceeded",
                          [("Retry-After", str(fault.get("retry_after", 1)))])

    def injected(self, entry):
        status = entry["status"]
        body = entry.get("body", {"type": "error", "error": {"message": f"injected error {status}"}})
        return json_response(status, body, list(entry.get("headers", {}).items()))

    def decorate(self, req, response, info):
        limit, remaining, _used, _reset = info
        response.headers += [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Resource", "api"),
                             ("X-RateLimit-NearLimit", "true" if remaining < limit / 5 else "false")]

    # Routes.

    def handle_api(self, req, seg):
        if req.method not in ("GET", "HEAD"):
            return self.not_found()
        identity = req.identity
        seg = [unquote(s) for s in seg]
        match seg:
            case ["user"]:
                if identity is None:
                    return self.unauthorized()
                uuid = "{" + stable_uuid("bitbucket", "user", identity.login) + "}"
                return json_response(200, {"type": "user", "display_name": identity.login, "uuid": uuid,
                                           "account_id": stable_uuid("bitbucket", "account", identity.login),
                                           "nickname": identity.login, "username": identity.login,
                                           "created_on": bb_time(EPOCH), "is_staff": False, "has_2fa_enabled": None,
                                           "links": {"self": self.link(f"{self.api_base}/users/{uuid}")}})
            case ["workspaces", key]:
                slug, entry = self.find_workspace(key)
                if slug is None:
                    return self.not_found(f"No workspace with identifier '{key}'.")
                return json_response(200, self.workspace_shape(slug, entry))
            case ["repositories", key]:
                slug, _ = self.find_workspace(key)
                if slug is None:
                    return self.not_found(f"No workspace with identifier '{key}'.")
                repos = [r for r in self.repos() if r.owner == slug and can_see(identity, r)]
                return self.paged(req, repos)
            case ["repositories", workspace, slug]:
                repo = self.find_repo(workspace, slug)
                if repo is None or not can_see(identity, repo):
                    return self.not_found(f"Repository {workspace}/{slug} not found")
                return json_response(200, self.repo_shape(repo))
            case ["repositories", workspace, slug, *rest]:
                repo = self.find_repo(workspace, slug)
                if repo is None or not can_see(identity, repo):
                    return self.not_found(f"Repository {workspace}/{slug} not found")
                return self.meta.handle(req, repo, rest) or self.not_found()
        return self.not_found()

    def paged(self, req, repos):
        sort = req.arg("sort")
        if sort:
            field = sort.lstrip("-")
            keys = {"name": lambda r: r.name.lower(), "slug": lambda r: r.name.lower(),
                    "full_name": lambda r: r.full_name.lower(), "created_on": lambda r: (r.created, r.index),
                    "updated_on": lambda r: r.updated(self.app.root)}
            repos = sorted(repos, key=keys.get(field, keys["created_on"]), reverse=sort.startswith("-"))
        pagelen = min(req.int_arg("pagelen", DEFAULT_PAGELEN), MAX_PAGELEN)
        page = req.int_arg("page", 1)
        items, last = page_slice(repos, page, pagelen)
        body = {"pagelen": pagelen, "size": len(repos), "values": [self.repo_shape(r) for r in items], "page": page}
        if page < last:
            body["next"] = page_url(self.app.base_url, req.path, req.query, {"page": page + 1})
        if page > 1:
            body["previous"] = page_url(self.app.base_url, req.path, req.query, {"page": min(page - 1, last)})
        return json_response(200, body)
