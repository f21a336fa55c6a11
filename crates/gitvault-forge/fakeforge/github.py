"""GitHub's REST API (v3, as GitHub Enterprise Server serves it under /api/v3), in the shapes of
@octokit/openapi's api.github.com.json: `minimal-repository` for org and user listings,
`repository` for /user/repos, `full-repository` for one repository, `public-user` /
`private-user`, `organization-full`. The repository metadata endpoints (issues, pull requests,
releases...) are in github_meta.py."""

import base64

from core import (Forge, Repo, Response, can_see, EPOCH, json_response, page_slice, page_url, rfc3339, stable_id,
                  unquote)
from github_meta import Metadata, collaborators, may_push, permission, permissions_object
from github_write import Writes

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


def node_id(kind, number):
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


class GitHub(Forge):
    name = "github"
    prefix = "/github"
    api_base = "/github/api/v3"
    realm = "GitHub"
    etags = True
    hidden_refs = ("refs/pull",)

    def __init__(self, app):
        super().__init__(app)
        self.meta = Metadata(self)
        self.writes = Writes(self)

    def api_segments(self, raw_path):
        # Release asset uploads go to `upload_url`: GitHub Enterprise Server's
        # /api/uploads/repos/{owner}/{repo}/releases/{id}/assets (uploads.github.com on github.com).
        uploads = self.prefix + "/api/uploads/"
        if raw_path.startswith(uploads):
            return ["uploads"] + raw_path[len(uploads):].split("/")
        return super().api_segments(raw_path)

    def may_push(self, repo, identity):
        return identity is not None and identity.write and may_push(repo, identity)

    def push_denied(self, repo, identity):
        # What GitHub's git answers; git shows it after "remote:" and fails with the 403.
        return Response(403, f"Permission to {repo.full_name}.git denied to {identity.login}.\n",
                        content_type="text/plain; charset=utf-8")

    # The world.

    def accounts(self):
        """login -> account entry; repository owners and token logins not listed are Users."""
        section = self.section()
        accounts = {}
        for repo in section.get("repos", []):
            accounts.setdefault(repo["owner"], {"type": "User"})
        _, data = self.app.world.current()
        for token in data.get("tokens", {}).values():
            if "login" in token:
                accounts.setdefault(token["login"], {"type": "User"})
        for login, entry in section.get("accounts", {}).items():
            accounts[login] = dict(entry)
        return accounts

    def account(self, login):
        for name, entry in self.accounts().items():
            if name.lower() == login.lower():
                return name, entry
        return None, None

    def repos(self):
        out = []
        for index, raw in enumerate(self.section().get("repos", [])):
            out.append(Repo("github", raw["owner"], raw["name"], raw, index, private=bool(raw.get("private", False)),
                            has_wiki=bool(raw.get("has_wiki", True)), fork=bool(raw.get("fork", False)),
                            default_branch=raw.get("default_branch", "main")))
        return out

    def find_repo(self, owner, name):
        for repo in self.repos():
            if repo.owner.lower() == owner.lower() and repo.name.lower() == name.lower():
                return repo
        return None

    def git_target(self, segments):
        # OWNER/REPO[.git|.wiki.git]/info/refs | git-upload-pack | git-receive-pack
        if len(segments) < 3:
            return None
        owner, name, rest = segments[0], segments[1], "/".join(segments[2:])
        if owner == "api":
            return None
        wiki = name.endswith(".wiki.git") or name.endswith(".wiki")
        for suffix in (".wiki.git", ".wiki", ".git"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        return self.find_repo(unquote(owner), unquote(name)), wiki, rest

    def is_download(self, segments):
        # OWNER/REPO/releases/download/TAG/NAME: release assets, outside the API.
        return len(segments) == 6 and segments[2:4] == ["releases", "download"]

    def download(self, req, identity, segments):
        return self.meta.download(req, identity, [unquote(s) for s in segments]) or self.not_found()

    # Shapes.

    def api(self, path):
        return self.url(self.api_base + path)

    def simple_user(self, login, entry):
        kind = entry.get("type", "User")
        uid = entry.get("id") or stable_id("github", "account", login)
        api = self.api(f"/users/{login}")
        return {
            "login": login, "id": uid, "node_id": node_id("User" if kind == "User" else "Organization", uid),
            "avatar_url": self.url(f"/github/avatars/u/{uid}"), "gravatar_id": "", "url": api,
            "html_url": self.url(f"/github/{login}"), "followers_url": api + "/followers",
            "following_url": api + "/following{/other_user}", "gists_url": api + "/gists{/gist_id}",
            "starred_url": api + "/starred{/owner}{/repo}", "subscriptions_url": api + "/subscriptions",
            "organizations_url": api + "/orgs", "repos_url": api + "/repos", "events_url": api + "/events{/privacy}",
            "received_events_url": api + "/received_events", "type": kind, "user_view_type": "public",
            "site_admin": False,
        }

    def owner_of(self, repo):
        login, entry = self.account(repo.owner)
        return self.simple_user(login or repo.owner, entry or {"type": "User"})

    def repo_shape(self, repo, shape, identity):
        """`shape` is "minimal", "repository" or "full"."""
        root = self.app.root
        api = self.api(f"/repos/{repo.full_name}")
        html = self.url(f"/github/{repo.full_name}")
        raw = repo.raw
        body = {
            "id": repo.id, "node_id": node_id("Repository", repo.id), "name": repo.name,
            "full_name": repo.full_name, "private": repo.private, "owner": self.owner_of(repo),
            "html_url": html, "description": repo.description or None, "fork": repo.fork, "url": api,
        }
        for key, suffix in [
            ("archive_url", "/{archive_format}{/ref}"), ("assignees_url", "/assignees{/user}"),
            ("blobs_url", "/git/blobs{/sha}"), ("branches_url", "/branches{/branch}"),
            ("collaborators_url", "/collaborators{/collaborator}"), ("comments_url", "/comments{/number}"),
            ("commits_url", "/commits{/sha}"), ("compare_url", "/compare/{base}...{head}"),
            ("contents_url", "/contents/{+path}"), ("contributors_url", "/contributors"),
            ("deployments_url", "/deployments"), ("downloads_url", "/downloads"), ("events_url", "/events"),
            ("forks_url", "/forks"), ("git_commits_url", "/git/commits{/sha}"), ("git_refs_url", "/git/refs{/sha}"),
            ("git_tags_url", "/git/tags{/sha}"), ("hooks_url", "/hooks"),
            ("issue_comment_url", "/issues/comments{/number}"), ("issue_events_url", "/issues/events{/number}"),
            ("issues_url", "/issues{/number}"), ("keys_url", "/keys{/key_id}"), ("labels_url", "/labels{/name}"),
            ("languages_url", "/languages"), ("merges_url", "/merges"), ("milestones_url", "/milestones{/number}"),
            ("notifications_url", "/notifications{?since,all,participating}"), ("pulls_url", "/pulls{/number}"),
            ("releases_url", "/releases{/id}"), ("stargazers_url", "/stargazers"),
            ("statuses_url", "/statuses/{sha}"), ("subscribers_url", "/subscribers"),
            ("subscription_url", "/subscription"), ("tags_url", "/tags"), ("teams_url", "/teams"),
            ("trees_url", "/git/trees{/sha}"),
        ]:
            body[key] = api + suffix
        host = self.app.base_url.removeprefix("http://")
        body.update({
            "created_at": rfc3339(repo.created), "updated_at": rfc3339(repo.updated(root)),
            "pushed_at": rfc3339(repo.pushed(root)),
            "git_url": f"git://{host}/github/{repo.full_name}.git",
            "ssh_url": self.ssh_url(repo.full_name, f"git@{host.split(':')[0]}:{repo.full_name}.git"),
            "clone_url": self.url(f"/github/{repo.full_name}.git"),
            "svn_url": html, "homepage": raw.get("homepage"), "mirror_url": None, "size": repo.size_kib(root),
            "stargazers_count": 0, "watchers_count": 0, "language": raw.get("language"),
            "has_issues": bool(raw.get("has_issues", True)),
            "has_projects": True, "has_downloads": True, "has_wiki": repo.has_wiki, "has_pages": False,
            "has_discussions": False, "forks_count": 0, "archived": repo.archived, "disabled": False,
            "open_issues_count": 0, "license": None, "allow_forking": True, "is_template": False,
            "web_commit_signoff_required": False, "topics": repo.topics,
            "visibility": raw.get("visibility", "private" if repo.private else "public"),
            "forks": 0, "open_issues": 0, "watchers": 0, "default_branch": repo.default_branch,
        })
        if identity is not None:
            # What the world says (owner, collaborator entry); else push without admin.
            body["permissions"] = permissions_object(permission(repo, identity) or "push")
        if shape == "full":
            body.update({"temp_clone_token": "" if repo.private else None, "allow_squash_merge": True,
                         "allow_merge_commit": True, "allow_rebase_merge": True, "allow_auto_merge": False,
                         "delete_branch_on_merge": False, "network_count": 0, "subscribers_count": 0})
            login, entry = self.account(repo.owner)
            if entry and entry.get("type") == "Organization":
                body["organization"] = self.simple_user(login, entry)
            parent = raw.get("parent")
            if repo.fork and parent:
                upstream = self.find_repo(*parent.split("/", 1))
                if upstream is not None:
                    body["parent"] = self.repo_shape(upstream, "repository", None)
                    body["source"] = body["parent"]
        return body

    def user_shape(self, login, entry, private):
        body = self.simple_user(login, entry)
        created = rfc3339(EPOCH)
        owned = [r for r in self.repos() if r.owner.lower() == login.lower()]
        body.update({
            "name": entry.get("name", login), "company": None, "blog": "", "location": None,
            "email": entry.get("email"), "hireable": None, "bio": None, "twitter_username": None,
            "public_repos": sum(1 for r in owned if not r.private), "public_gists": 0, "followers": 0,
            "following": 0, "created_at": created, "updated_at": created,
        })
        if private:
            private_count = sum(1 for r in owned if r.private)
            body.update({"user_view_type": "private", "private_gists": 0, "total_private_repos": private_count,
                         "owned_private_repos": private_count, "disk_usage": 0, "collaborators": 0,
                         "two_factor_authentication": True,
                         "plan": {"name": "pro", "space": 976562499, "private_repos": 9999, "collaborators": 0}})
        return body

    def org_shape(self, login, entry, identity):
        uid = entry.get("id") or stable_id("github", "account", login)
        api = self.api(f"/orgs/{login}")
        owned = [r for r in self.repos() if r.owner.lower() == login.lower()]
        created = rfc3339(EPOCH)
        body = {
            "login": login, "id": uid, "node_id": node_id("Organization", uid), "url": api,
            "repos_url": api + "/repos", "events_url": api + "/events", "hooks_url": api + "/hooks",
            "issues_url": api + "/issues", "members_url": api + "/members{/member}",
            "public_members_url": api + "/public_members{/member}",
            "avatar_url": self.url(f"/github/avatars/u/{uid}"), "description": entry.get("description"),
            "name": entry.get("name", login), "company": None, "blog": "", "location": None, "email": None,
            "twitter_username": None, "is_verified": False, "has_organization_projects": True,
            "has_repository_projects": True, "public_repos": sum(1 for r in owned if not r.private),
            "public_gists": 0, "followers": 0, "following": 0, "html_url": self.url(f"/github/{login}"),
            "type": "Organization", "created_at": created, "updated_at": created, "archived_at": None,
        }
        if identity is not None:
            private_count = sum(1 for r in owned if r.private)
            body.update({"total_private_repos": private_count, "owned_private_repos": private_count,
                         "private_gists": 0, "disk_usage": 0, "collaborators": 0})
        return body

    # Errors.

    def error(self, status, message, doc):
        return json_response(status, {"message": message, "documentation_url": doc, "status": str(status)})

    def unauthorized(self):
        return self.error(401, "Bad credentials", DOCS)

    def not_found(self, what="Not Found"):
        return self.error(404, "Not Found", DOCS)

    def rate_limited(self, info):
        return json_response(403, {"message": "API rate limit exceeded for user ID 1.", "documentation_url": RATE_DOCS})

    def secondary_limited(self, fault):
        body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                           "again. If you reach out to GitHub Support for help, please include the request ID "
                           "0000:0000:0000000:0000000:00000000.",
                "documentation_url": RATE_DOCS + "#about-secondary-rate-limits"}
        return json_response(fault.get("status", 403), body, [("Retry-After", str(fault.get("retry_after", 60)))])

    def injected(self, entry):
        status = entry["status"]
        body = entry.get("body", {"message": f"Injected error {status}", "documentation_url": DOCS,
                                  "status": str(status)})
        return json_response(status, body, list(entry.get("headers", {}).items()))

    def decorate(self, req, response, info):
        limit, remaining, used, reset = info
        auth = req.identity is not None
        response.headers += [
            ("X-GitHub-Media-Type", "github.v3; format=json"),
            ("X-GitHub-Api-Version-Selected", "2022-11-28"),
            ("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(reset)), ("X-RateLimit-Used", str(used)), ("X-RateLimit-Resource", "core"),
            ("Cache-Control", ("private" if auth else "public") + ", max-age=60, s-maxage=60"),
            ("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP"),
            ("Access-Control-Expose-Headers", "ETag, Link, Location, Retry-After, X-GitHub-OTP, X-RateLimit-Limit, "
                                              "X-RateLimit-Remaining, X-RateLimit-Used, X-RateLimit-Resource, "
                                              "X-RateLimit-Reset, X-GitHub-Media-Type"),
        ]

    # Routes.

    def writes_limited(self, fault):
        return self.secondary_limited(fault)

    def handle_api(self, req, seg):
        if req.write:
            return self.writes.handle(req, seg) or self.not_found()
        seg = [unquote(s) for s in seg]
        identity = req.identity
        match seg:
            case ["user"]:
                if identity is None:
                    return self.error(401, "Requires authentication", DOCS + "/users/users#get-the-authenticated-user")
                login, entry = self.account(identity.login)
                return json_response(200, self.user_shape(login, entry, private=True))
            case ["user", "repos"]:
                if identity is None:
                    return self.error(401, "Requires authentication", DOCS + "/repos/repos#list-repositories-for-"
                                                                            "the-authenticated-user")
                return self.list_user_repos(req, identity)
            case ["users", login]:
                login, entry = self.account(login)
                if login is None:
                    return self.not_found()
                own = identity is not None and identity.login.lower() == login.lower()
                return json_response(200, self.user_shape(login, entry, private=own))
            case ["users", login, "repos"]:
                login, entry = self.account(login)
                if login is None:
                    return self.not_found()
                kind = req.arg("type", "owner")
                repos = [r for r in self.repos() if not r.private and can_see(identity, r)
                         and (kind in ("all", "owner") and r.owner.lower() == login.lower()
                              or kind in ("all", "member") and login in [c for c, _ in collaborators(r)])]
                return self.paged(req, repos, "minimal", identity, default_sort="full_name")
            case ["orgs", login]:
                login, entry = self.account(login)
                if login is None or entry.get("type") != "Organization":
                    return self.not_found()
                return json_response(200, self.org_shape(login, entry, identity))
            case ["orgs", login, "repos"]:
                login, entry = self.account(login)
                if login is None or entry.get("type") != "Organization":
                    return self.not_found()
                kind = req.arg("type", "all")
                repos = [r for r in self.repos() if r.owner.lower() == login.lower() and can_see(identity, r)]
                if kind == "public":
                    repos = [r for r in repos if not r.private]
                elif kind == "private":
                    repos = [r for r in repos if r.private]
                elif kind == "forks":
                    repos = [r for r in repos if r.fork]
                elif kind == "sources":
                    repos = [r for r in repos if not r.fork]
                return self.paged(req, repos, "minimal", identity, default_sort="created")
            case ["repos", owner, name]:
                repo = self.find_repo(owner, name)
                if repo is None or not can_see(identity, repo):
                    return self.not_found()
                return json_response(200, self.repo_shape(repo, "full", identity))
            case ["repos", owner, name, *rest]:
                repo = self.find_repo(owner, name)
                if repo is None or not can_see(identity, repo):
                    return self.not_found()
                return self.meta.handle(req, repo, rest) or self.not_found()
            case ["rate_limit"]:
                limit, remaining, used, reset = self.app.limiters[self.name].peek(self.app.faults(self), 0)
                core = {"limit": limit, "remaining": remaining, "reset": reset, "used": used, "resource": "core"}
                return json_response(200, {"resources": {"core": core}, "rate": core})
        return self.not_found()

    def list_user_repos(self, req, identity):
        visibility = req.arg("visibility", "all")
        affiliation = set(req.arg("affiliation", "owner,collaborator,organization_member").split(","))
        kind = req.arg("type")
        if kind is not None and ("visibility" in dict(req.query) or "affiliation" in dict(req.query)):
            return json_response(422, {"message": "If you specify visibility or affiliation, you cannot specify "
                                                  "type.", "documentation_url": DOCS, "status": "422"})
        if kind == "owner":
            affiliation = {"owner"}
        elif kind == "member":
            affiliation = {"collaborator", "organization_member"}
        elif kind in ("public", "private"):
            visibility = kind
        accounts = self.accounts()
        me = identity.login.lower()
        orgs = {login.lower() for login, entry in accounts.items()
                if entry.get("type") == "Organization" and me in [m.lower() for m in entry.get("members", [])]}
        repos = []
        for repo in self.repos():
            if not can_see(identity, repo):
                continue
            if visibility == "public" and repo.private or visibility == "private" and not repo.private:
                continue
            owner = repo.owner.lower()
            if ("owner" in affiliation and owner == me
                    or "organization_member" in affiliation and owner in orgs
                    or "collaborator" in affiliation and me in [c.lower() for c, _ in collaborators(repo)]):
                repos.append(repo)
        return self.paged(req, repos, "repository", identity, default_sort="full_name")

    def paged(self, req, repos, shape, identity, default_sort):
        sort = req.arg("sort", default_sort)
        direction = req.arg("direction", "asc" if sort == "full_name" else "desc")
        root = self.app.root
        keys = {"full_name": lambda r: r.full_name.lower(), "created": lambda r: (r.created, r.index),
                "updated": lambda r: r.updated(root), "pushed": lambda r: r.pushed(root)}
        repos = sorted(repos, key=keys.get(sort, keys["created"]), reverse=direction == "desc")
        per_page = min(req.int_arg("per_page", 30), 100)
        page = req.int_arg("page", 1)
        items, last = page_slice(repos, page, per_page)
        headers = []
        if len(repos) > per_page:
            headers.append(("Link", link_header(self.app.base_url, req.path, req.query, page, last)))
        return json_response(200, [self.repo_shape(r, shape, identity) for r in items], headers)


def link_header(base, path, query, page, last):
    """Link as GitHub writes it: prev, next, last, first; only the relations that exist."""
    links = []
    if page > 1:
        links.append((min(page - 1, last), "prev"))
    if page < last:
        links.append((page + 1, "next"))
        links.append((last, "last"))
    if page > 1:
        links.append((1, "first"))
    return ", ".join(f'<{page_url(base, path, query, {"page": n})}>; rel="{rel}"' for n, rel in links)
