"""Gitea/Forgejo's REST API (/api/v1), in the shapes of forgejo-swagger.v1.json: `Repository`,
`User`, `Organization`, `APIError`, `APINotFound`. Pagination by `page` and `limit` (default 30,
at most 50, Gitea's DEFAULT_PAGING_NUM and MAX_RESPONSE_ITEMS), with `X-Total-Count` and a `Link`
header written as Gitea writes it (next, last, first, prev; joined by a bare comma; the query
re-encoded with sorted keys)."""

import time
import urllib.parse

from core import EPOCH, Forge, Repo, can_see, json_response, page_slice, rfc3339, stable_id, unquote
from core import Response
from gitea_meta import Metadata, may
from gitea_write import Writes

DEFAULT_LIMIT = 30
MAX_LIMIT = 50


class Gitea(Forge):
    name = "gitea"
    prefix = "/gitea"
    api_base = "/gitea/api/v1"
    realm = "Gitea"
    hidden_refs = ("refs/pull",)

    def __init__(self, app):
        super().__init__(app)
        self.meta = Metadata(self)
        self.writes = Writes(self)

    def may_push(self, repo, identity):
        return identity is not None and identity.write and may(repo, identity, "push")

    def push_denied(self, repo, identity):
        return Response(403, "User permission denied\n", content_type="text/plain; charset=utf-8")

    def conditional(self, segments):
        # A repository and its metadata (gitea_meta.py) answer with ETags and 304s; the account
        # listings do not.
        return len(segments) >= 3 and segments[0] == "repos"

    # The world.

    def orgs(self):
        """name -> members."""
        out = {}
        for entry in self.section().get("orgs", []):
            if isinstance(entry, str):
                out[entry] = []
            else:
                out[entry["name"]] = list(entry.get("members", []))
        return out

    def users(self):
        names = list(self.section().get("users", []))
        _, data = self.app.world.current()
        for token in data.get("tokens", {}).values():
            if "login" in token and token["login"] not in names:
                names.append(token["login"])
        orgs = self.orgs()
        for repo in self.section().get("repos", []):
            if repo["owner"] not in names and repo["owner"] not in orgs:
                names.append(repo["owner"])
        return names

    def find_account(self, name):
        """(name, is_org) or (None, None); names are case-insensitive as on Gitea."""
        for org in self.orgs():
            if org.lower() == name.lower():
                return org, True
        for user in self.users():
            if user.lower() == name.lower():
                return user, False
        return None, None

    def repos(self):
        return [Repo("gitea", raw["owner"], raw["name"], raw, index, private=bool(raw.get("private", False)),
                     has_wiki=bool(raw.get("has_wiki", True)), fork=bool(raw.get("fork", False)),
                     default_branch=raw.get("default_branch", "main"))
                for index, raw in enumerate(self.section().get("repos", []))]

    def find_repo(self, owner, name):
        for repo in self.repos():
            if repo.owner.lower() == owner.lower() and repo.name.lower() == name.lower():
                return repo
        return None

    def git_target(self, segments):
        # OWNER/REPO[.git|.wiki.git]/info/refs | git-upload-pack | git-receive-pack
        if len(segments) < 3 or segments[0] == "api":
            return None
        owner, name, rest = segments[0], segments[1], "/".join(segments[2:])
        wiki = name.endswith(".wiki.git") or name.endswith(".wiki")
        for suffix in (".wiki.git", ".wiki", ".git"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        return self.find_repo(unquote(owner), unquote(name)), wiki, rest

    def is_download(self, segments):
        # OWNER/REPO/releases/download/TAG/NAME: release attachments, outside the API.
        return len(segments) == 6 and segments[2:4] == ["releases", "download"]

    def download(self, req, identity, segments):
        return self.meta.download(identity, [unquote(s) for s in segments]) or self.not_found()

    # Shapes.

    def user_shape(self, name, is_org):
        uid = stable_id("gitea", "account", name)
        created = rfc3339(EPOCH)
        return {
            "id": uid, "login": name, "login_name": "", "source_id": 0, "full_name": "",
            "email": f"{name}@noreply.localhost", "avatar_url": self.url(f"/gitea/avatars/{uid}"),
            "html_url": self.url(f"/gitea/{name}"), "language": "", "is_admin": False,
            "last_login": "0001-01-01T00:00:00Z" if is_org else created, "created": created, "restricted": False,
            "active": not is_org, "prohibit_login": False, "location": "", "pronouns": "", "website": "",
            "description": "", "visibility": "public", "followers_count": 0, "following_count": 0,
            "starred_repos_count": 0, "username": name,
        }

    def org_shape(self, name):
        uid = stable_id("gitea", "account", name)
        return {
            "id": uid, "name": name, "full_name": "", "email": "", "avatar_url": self.url(f"/gitea/avatars/{uid}"),
            "description": "", "website": "", "location": "", "visibility": "public",
            "repo_admin_change_team_access": False, "username": name,
        }

    def repo_shape(self, repo, identity, with_parent=True):
        root = self.app.root
        raw = repo.raw
        _, is_org = self.find_account(repo.owner)
        html = self.url(f"/gitea/{repo.full_name}")
        host = self.app.base_url.removeprefix("http://").split(":")[0]
        empty = not repo.exists_on_disk(root)
        admin = identity is not None and identity.login.lower() == repo.owner.lower()
        parent = None
        if with_parent and repo.fork and raw.get("parent"):
            upstream = self.find_repo(*raw["parent"].split("/", 1))
            if upstream is not None:
                parent = self.repo_shape(upstream, identity, with_parent=False)
        body = {
            "id": repo.id, "owner": self.user_shape(repo.owner, bool(is_org)), "name": repo.name,
            "full_name": repo.full_name, "description": repo.description, "empty": empty, "private": repo.private,
            "fork": repo.fork, "template": False, "parent": parent, "mirror": False, "size": repo.size_kib(root),
            "language": "", "languages_url": self.url(f"{self.api_base}/repos/{repo.full_name}/languages"),
            "html_url": html, "url": self.url(f"{self.api_base}/repos/{repo.full_name}"), "link": "",
            "ssh_url": self.ssh_url(repo.full_name, f"git@{host}:{repo.full_name}.git"), "clone_url": html + ".git", "original_url": "",
            "website": raw.get("website", ""), "stars_count": 0, "forks_count": 0, "watchers_count": 0,
            "open_issues_count": 0,
            "open_pr_counter": 0, "release_counter": 0, "default_branch": repo.default_branch,
            "archived": repo.archived, "created_at": rfc3339(repo.created), "updated_at": rfc3339(repo.updated(root)),
            "archived_at": rfc3339(repo.updated(root)) if repo.archived else "1970-01-01T00:00:00Z",
            "permissions": {"admin": admin, "push": identity is not None, "pull": True},
            "has_issues": bool(raw.get("has_issues", True)),
            "internal_tracker": {"enable_time_tracker": True, "allow_only_contributors_to_track_time": True,
                                 "enable_issue_dependencies": True},
            "has_wiki": repo.has_wiki, "wiki_branch": "main",
            "globally_editable_wiki": False, "has_wiki_contents": repo.exists_on_disk(root, wiki=True),
            "wiki_clone_url": html + ".wiki.git",
            "has_pull_requests": True, "has_projects": True, "has_releases": True, "has_packages": True,
            "has_actions": False, "ignore_whitespace_conflicts": False, "allow_merge_commits": True,
            "allow_rebase": True, "allow_rebase_explicit": True, "allow_squash_merge": True,
            "allow_fast_forward_only_merge": True, "allow_rebase_update": True,
            "default_delete_branch_after_merge": False, "default_merge_style": "merge",
            "default_update_style": "merge", "default_allow_maintainer_edit": False, "avatar_url": "",
            "internal": False, "mirror_interval": "", "object_format_name": "sha1",
            "mirror_updated": "0001-01-01T00:00:00Z", "repo_transfer": None, "topics": repo.topics,
        }
        return body

    # Errors.

    def swagger(self):
        return self.url(self.api_base.removesuffix("/v1") + "/swagger")

    def unauthorized(self):
        return json_response(401, {"message": "invalid username, password or token", "url": self.swagger()})

    def not_found(self, what="Not Found"):
        return json_response(404, {"errors": [], "message": "The target couldn't be found.", "url": self.swagger()})

    def rate_limited(self, info):
        _limit, _remaining, _used, reset = info
        wait = max(1, reset - int(time.time()))
        return json_response(429, {"message": "rate limit exceeded", "url": self.swagger()},
                             [("Retry-After", str(wait))])

    def secondary_limited(self, fault):
        return json_response(fault.get("status", 429), {"message": "rate limit exceeded", "url": self.swagger()},
                             [("Retry-After", str(fault.get("retry_after", 1)))])

    def injected(self, entry):
        status = entry["status"]
        body = entry.get("body", {"message": f"injected error {status}", "url": self.swagger()})
        return json_response(status, body, list(entry.get("headers", {}).items()))

    # Routes.

    def handle_api(self, req, seg):
        if req.write:
            return self.writes.handle(req, seg) or self.not_found()
        seg = [unquote(s) for s in seg]
        identity = req.identity
        match seg:
            case ["version"]:
                return json_response(200, {"version": "11.0.0+gitea-1.22.0"})
            case ["user"]:
                if identity is None:
                    return json_response(401, {"message": "token is required", "url": self.swagger()})
                name, _ = self.find_account(identity.login)
                return json_response(200, self.user_shape(name or identity.login, False))
            case ["user", "repos"]:
                if identity is None:
                    return json_response(401, {"message": "token is required", "url": self.swagger()})
                me = identity.login.lower()
                member_of = {org.lower() for org, members in self.orgs().items()
                             if me in [m.lower() for m in members]}
                repos = [r for r in self.repos() if can_see(identity, r) and (
                    r.owner.lower() == me or r.owner.lower() in member_of
                    or me in [c.lower() for c in r.raw.get("collaborators", [])])]
                return self.paged(req, repos, identity)
            case ["users", name]:
                name, is_org = self.find_account(name)
                if name is None:
                    return self.not_found()
                return json_response(200, self.user_shape(name, is_org))
            case ["users", name, "repos"]:
                name, _ = self.find_account(name)
                if name is None:
                    return self.not_found()
                repos = [r for r in self.repos() if r.owner.lower() == name.lower() and can_see(identity, r)]
                return self.paged(req, repos, identity)
            case ["orgs", name]:
                name, is_org = self.find_account(name)
                if not is_org:
                    return self.not_found()
                return json_response(200, self.org_shape(name))
            case ["orgs", name, "repos"]:
                name, is_org = self.find_account(name)
                if not is_org:
                    return self.not_found()
                repos = [r for r in self.repos() if r.owner.lower() == name.lower() and can_see(identity, r)]
                return self.paged(req, repos, identity)
            case ["repos", owner, name]:
                repo = self.find_repo(owner, name)
                if repo is None or not can_see(identity, repo):
                    return self.not_found()
                return json_response(200, self.repo_shape(repo, identity))
            case ["repos", owner, name, *rest]:
                repo = self.find_repo(owner, name)
                if repo is None or not can_see(identity, repo):
                    return self.not_found()
                return self.meta.handle(req, repo, rest) or self.not_found()
        return self.not_found()

    def paged(self, req, repos, identity):
        # Gitea lists by id, oldest first.
        repos = sorted(repos, key=lambda r: (r.created, r.index))
        limit = min(req.int_arg("limit", DEFAULT_LIMIT), MAX_LIMIT)
        page = req.int_arg("page", 1)
        items, last = page_slice(repos, page, limit)
        headers = [("X-Total-Count", str(len(repos))),
                   ("Access-Control-Expose-Headers", "X-Total-Count, Link")]
        link = link_header(self.app.base_url, req.path, req.query, page, last)
        if link:
            headers.append(("Link", link))
        return json_response(200, [self.repo_shape(r, identity) for r in items], headers)


def link_header(base, path, query, page, last):
    def url(n):
        values = {}
        for key, value in query:
            values.setdefault(key, []).append(value)
        values["page"] = [str(n)]
        return f"{base}{path}?{urllib.parse.urlencode(sorted(values.items()), doseq=True)}"

    links = []
    if page < last:
        links.append(f'<{url(page + 1)}>; rel="next"')
        links.append(f'<{url(last)}>; rel="last"')
    if page > 1:
        links.append(f'<{url(1)}>; rel="first"')
        links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
    return ",".join(links)
