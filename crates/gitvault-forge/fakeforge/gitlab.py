"""GitLab's REST API (/api/v4) as its documentation describes it: groups addressed by id or
URL-encoded full path, projects by id or URL-encoded `path_with_namespace`, offset pagination
(`page`, `per_page` default 20 and at most 100) with `Link` (prev, next, first, last), `X-Page`,
`X-Per-Page`, `X-Next-Page`, `X-Prev-Page`, `X-Total`, `X-Total-Pages`, and `RateLimit-*` headers;
429 "Retry later" with `Retry-After` when throttled."""

import email.utils
import time

from core import (EPOCH, INVALID, Forge, Repo, can_see, json_response, page_slice, page_url, Response, rfc3339, stable_id,
                  unquote)
from gitlab_meta import Metadata
from gitlab_write import Writes

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100


class Group:
    def __init__(self, path, raw):
        self.full_path = path
        self.path = path.rsplit("/", 1)[-1]
        self.parent = path.rsplit("/", 1)[0] if "/" in path else None
        self.raw = raw
        self.id = raw.get("id") or stable_id("gitlab", "group", path)
        self.visibility = raw.get("visibility", "public")


class GitLab(Forge):
    name = "gitlab"
    prefix = "/gitlab"
    api_base = "/gitlab/api/v4"
    realm = "GitLab"
    # GitLab keeps merge request heads (and pipelines, keep-arounds, environments) for itself.
    hidden_refs = ("refs/merge-requests", "refs/pipelines", "refs/keep-around", "refs/environments")
    # GitLab's API answers carry a weak ETag and honour If-None-Match (Rack::ETag and
    # Rack::ConditionalGet in front of the API).
    etags = True

    def __init__(self, app):
        super().__init__(app)
        self.meta = Metadata(self)
        self.writes = Writes(self)

    # The world.

    def groups(self):
        """full path -> Group; parents of listed groups and namespaces of projects that are not a
        user's exist too."""
        section = self.section()
        raw_groups = {}
        for entry in section.get("groups", []):
            if isinstance(entry, str):
                raw_groups[entry] = {}
            else:
                raw_groups[entry["path"]] = entry
        users = set(self.users())
        for project in section.get("projects", []):
            namespace = project["namespace"]
            if namespace not in users:
                raw_groups.setdefault(namespace, {})
        for path in list(raw_groups):
            parts = path.split("/")
            for i in range(1, len(parts)):
                raw_groups.setdefault("/".join(parts[:i]), {})
        return {path: Group(path, raw) for path, raw in sorted(raw_groups.items())}

    def users(self):
        names = list(self.section().get("users", []))
        _, data = self.app.world.current()
        for token in data.get("tokens", {}).values():
            if "login" in token and token["login"] not in names:
                names.append(token["login"])
        return names

    def user_id(self, name):
        return stable_id("gitlab", "user", name)

    def find_user(self, key):
        for name in self.users():
            if key == str(self.user_id(name)) or key.lower() == name.lower():
                return name
        return None

    def find_group(self, key):
        for group in self.groups().values():
            if key == str(group.id) or key.lower() == group.full_path.lower():
                return group
        return None

    def projects(self):
        out = []
        for index, raw in enumerate(self.section().get("projects", [])):
            visibility = raw.get("visibility", "public")
            out.append(Repo("gitlab", raw["namespace"], raw["name"], raw, index, private=visibility != "public",
                            has_wiki=bool(raw.get("wiki_enabled", True)),
                            fork=bool(raw.get("forked", False) or raw.get("forked_from")),
                            default_branch=raw.get("default_branch", "main")))
        return out

    def find_project(self, key):
        for project in self.projects():
            if key == str(project.id) or key.lower() == project.full_name.lower():
                return project
        return None

    def git_target(self, segments):
        # GROUP/SUB/PROJECT[.git|.wiki.git]/info/refs | git-upload-pack | git-receive-pack
        if not segments or segments[0] == "api":
            return None
        for i, segment in enumerate(segments):
            if segment.endswith(".git") and i >= 1:
                wiki = segment.endswith(".wiki.git")
                name = segment[: -len(".wiki.git")] if wiki else segment[: -len(".git")]
                path = "/".join(unquote(s) for s in segments[:i] + [name])
                return self.find_project(path), wiki, "/".join(segments[i + 1:])
        return None

    def is_download(self, segments):
        # Release link targets: PROJECT/uploads/SECRET/NAME, PROJECT/-/releases/TAG/downloads/PATH.
        return self.meta.download_target([unquote(s) for s in segments]) is not None

    def download(self, req, identity, segments):
        return self.meta.download(req, identity, [unquote(s) for s in segments]) or self.not_found()

    # Shapes.

    def web(self, path):
        return self.url(f"/gitlab/{path}")

    def namespace_shape(self, path):
        group = self.groups().get(path)
        if group is not None:
            parent = self.groups().get(group.parent) if group.parent else None
            return {"id": group.id, "name": group.raw.get("name", group.path), "path": group.path, "kind": "group",
                    "full_path": group.full_path, "parent_id": parent.id if parent else None, "avatar_url": None,
                    "web_url": self.web(f"groups/{group.full_path}")}
        return {"id": self.user_id(path), "name": path, "path": path, "kind": "user", "full_path": path,
                "parent_id": None, "avatar_url": None, "web_url": self.web(path)}

    def user_shape(self, name):
        return {"id": self.user_id(name), "username": name, "name": name.capitalize(), "state": "active",
                "locked": False, "avatar_url": None, "web_url": self.web(name)}

    def group_shape(self, group, identity):
        parent = self.groups().get(group.parent) if group.parent else None
        return {
            "id": group.id, "web_url": self.web(f"groups/{group.full_path}"), "name": group.raw.get("name", group.path),
            "path": group.path, "description": group.raw.get("description", ""), "visibility": group.visibility,
            "share_with_group_lock": False, "require_two_factor_authentication": False,
            "two_factor_grace_period": 48, "project_creation_level": "developer", "auto_devops_enabled": None,
            "subgroup_creation_level": "maintainer", "emails_disabled": False, "emails_enabled": True,
            "mentions_disabled": None, "lfs_enabled": True, "default_branch": None,
            "default_branch_protection": 2, "avatar_url": None, "request_access_enabled": True,
            "full_name": " / ".join(self.groups()[p].raw.get("name", self.groups()[p].path)
                                    for p in prefixes(group.full_path)),
            "full_path": group.full_path, "created_at": rfc3339(EPOCH, millis=True),
            "parent_id": parent.id if parent else None, "shared_with_groups": [],
        }

    def project_shape(self, project, identity):
        root = self.app.root
        raw = project.raw
        path = project.full_name
        empty = not project.exists_on_disk(root)
        namespace = self.namespace_shape(project.owner)
        host = self.app.base_url.removeprefix("http://").split(":")[0]
        api = self.url(f"{self.api_base}/projects/{project.id}")
        body = {
            "id": project.id, "description": project.description or None, "name": raw.get("title", project.name),
            "name_with_namespace": " / ".join([*project.owner.split("/"), raw.get("title", project.name)]),
            "path": project.name, "path_with_namespace": path, "created_at": rfc3339(project.created, millis=True),
            "default_branch": None if empty else project.default_branch, "tag_list": project.topics,
            "topics": project.topics, "ssh_url_to_repo": self.ssh_url(path, f"git@{host}:{path}.git"),
            "http_url_to_repo": self.web(f"{path}.git"), "web_url": self.web(path), "readme_url": None,
            "forks_count": 0, "avatar_url": None, "star_count": 0,
            "last_activity_at": rfc3339(project.pushed(root), millis=True), "namespace": namespace,
            "_links": {"self": api, "issues": api + "/issues", "merge_requests": api + "/merge_requests",
                       "repo_branches": api + "/repository/branches", "labels": api + "/labels",
                       "events": api + "/events", "members": api + "/members",
                       "cluster_agents": api + "/cluster_agents"},
            "packages_enabled": True, "empty_repo": empty, "archived": project.archived,
            "visibility": raw.get("visibility", "public"), "resolve_outdated_diff_discussions": False,
            "container_registry_enabled": False, "issues_enabled": bool(raw.get("issues_enabled", True)),
            "merge_requests_enabled": bool(raw.get("merge_requests_enabled", True)),
            "wiki_enabled": project.has_wiki, "jobs_enabled": True, "snippets_enabled": True,
            "lfs_enabled": True, "creator_id": self.user_id(identity.login if identity else "root"),
            "import_status": "none", "open_issues_count": 0, "public_jobs": True, "shared_with_groups": [],
            "only_allow_merge_if_pipeline_succeeds": False, "request_access_enabled": True,
            "repository_access_level": "enabled", "wiki_access_level": "enabled" if project.has_wiki else "disabled",
            "issues_access_level": "enabled" if raw.get("issues_enabled", True) else "disabled",
            "merge_requests_access_level": "enabled" if raw.get("merge_requests_enabled", True) else "disabled",
        }
        if namespace["kind"] == "user":
            body["owner"] = self.user_shape(project.owner)
        upstream_path = raw.get("forked_from")
        if project.fork:
            upstream = self.find_project(upstream_path) if upstream_path else None
            if upstream is not None:
                body["forked_from_project"] = {
                    "id": upstream.id, "name": upstream.name, "path": upstream.name,
                    "path_with_namespace": upstream.full_name, "namespace": self.namespace_shape(upstream.owner),
                    "http_url_to_repo": self.web(f"{upstream.full_name}.git"), "web_url": self.web(upstream.full_name),
                }
            else:
                body["forked_from_project"] = {}
        if identity is not None:
            body["permissions"] = {"project_access": {"access_level": 30, "notification_level": 3},
                                   "group_access": None}
        return body

    # Errors.

    def unauthorized(self):
        return json_response(401, {"message": "401 Unauthorized"})

    def not_found(self, what="Not Found"):
        if what == "Not Found":
            return json_response(404, {"error": "404 Not Found"})
        return json_response(404, {"message": f"404 {what} Not Found"})

    def rate_limited(self, info):
        _limit, _remaining, _used, reset = info
        return Response(429, "Retry later\n", [("Retry-After", str(max(1, reset - int(time.time()))))],
                        content_type="text/plain")

    def secondary_limited(self, fault):
        return Response(fault.get("status", 429), "Retry later\n", [("Retry-After", str(fault.get("retry_after", 1)))],
                        content_type="text/plain")

    def injected(self, entry):
        status = entry["status"]
        body = entry.get("body", {"message": f"{status} injected"})
        return json_response(status, body, list(entry.get("headers", {}).items()))

    def decorate(self, req, response, info):
        limit, remaining, used, reset = info
        response.headers += [
            ("RateLimit-Name", "throttle_authenticated_api" if req.identity else "throttle_unauthenticated_api"),
            ("RateLimit-Limit", str(limit)), ("RateLimit-Observed", str(used)),
            ("RateLimit-Remaining", str(remaining)), ("RateLimit-Reset", str(reset)),
            ("RateLimit-ResetTime", email.utils.formatdate(reset, usegmt=True)),
            ("Cache-Control", "max-age=0, private, must-revalidate"),
        ]

    # Auth: PRIVATE-TOKEN or Authorization: Bearer on the API; Basic with the token as password
    # (user oauth2 by convention) on git.

    def api_identity(self, req):
        creds = req.credentials
        if creds.private_token:
            return self.token_identity(creds.private_token)
        if creds.token:
            return self.token_identity(creds.token)
        if creds.present:
            return INVALID
        return None

    # Routes.

    def push_denied(self, repo, identity):
        return Response(403, "You are not allowed to push code to this project.\n",
                        content_type="text/plain; charset=utf-8")

    def handle_api(self, req, seg):
        if req.write:
            return self.writes.handle(req, seg) or self.not_found()
        identity = req.identity
        seg = [unquote(s) for s in seg]
        match seg:
            case ["namespaces", key]:
                group = self.find_group(key)
                user = None if group else self.find_user(key)
                if group is None and user is None:
                    return self.not_found("Namespace")
                return json_response(200, self.namespace_shape(group.full_path if group else user))
            case ["user"]:
                if identity is None:
                    return self.unauthorized()
                return json_response(200, self.user_shape(identity.login))
            case ["users"]:
                name = req.arg("username")
                users = self.users() if name is None else [u for u in self.users() if u.lower() == name.lower()]
                return self.paged(req, users, self.user_shape)
            case ["users", key]:
                name = self.find_user(key)
                if name is None:
                    return self.not_found("User")
                return json_response(200, self.user_shape(name))
            case ["users", key, "projects"]:
                name = self.find_user(key)
                if name is None:
                    return self.not_found("User")
                projects = [p for p in self.projects() if p.owner == name and can_see(identity, p)]
                return self.project_list(req, projects, identity)
            case ["groups", key]:
                group = self.find_group(key)
                if group is None:
                    return self.not_found("Group")
                body = self.group_shape(group, identity)
                if req.arg("with_projects", "true") != "false":
                    body["projects"] = [self.project_shape(p, identity) for p in self.projects()
                                        if p.owner == group.full_path and can_see(identity, p)][:100]
                    body["shared_projects"] = []
                return json_response(200, body)
            case ["groups", key, "projects"]:
                group = self.find_group(key)
                if group is None:
                    return self.not_found("Group")
                deep = req.arg("include_subgroups", "false") == "true"
                projects = [p for p in self.projects() if can_see(identity, p) and (
                    p.owner == group.full_path or deep and p.owner.startswith(group.full_path + "/"))]
                return self.project_list(req, projects, identity)
            case ["groups", key, ("subgroups" | "descendant_groups") as which]:
                group = self.find_group(key)
                if group is None:
                    return self.not_found("Group")
                found = [g for g in self.groups().values() if (
                    g.parent == group.full_path if which == "subgroups"
                    else g.full_path.startswith(group.full_path + "/"))]
                return self.paged(req, found, lambda g: self.group_shape(g, identity))
            case ["projects", key]:
                project = self.find_project(key)
                if project is None or not can_see(identity, project):
                    return self.not_found("Project")
                return json_response(200, self.project_shape(project, identity))
            case ["projects", key, *rest]:
                project = self.find_project(key)
                if project is None or not can_see(identity, project):
                    return self.not_found("Project")
                return self.meta.handle(req, project, rest) or self.not_found()
        return self.not_found()

    def project_list(self, req, projects, identity):
        archived = req.arg("archived")
        if archived is not None:
            projects = [p for p in projects if p.archived == (archived == "true")]
        visibility = req.arg("visibility")
        if visibility is not None:
            projects = [p for p in projects if p.raw.get("visibility", "public") == visibility]
        order = req.arg("order_by", "created_at")
        keys = {"id": lambda p: p.id, "name": lambda p: p.name.lower(), "path": lambda p: p.full_name.lower(),
                "created_at": lambda p: (p.created, p.index),
                "last_activity_at": lambda p: p.pushed(self.app.root)}
        projects = sorted(projects, key=keys.get(order, keys["created_at"]), reverse=req.arg("sort", "desc") == "desc")
        return self.paged(req, projects, lambda p: self.project_shape(p, identity))

    def paged(self, req, items, shape):
        per_page = min(req.int_arg("per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        page = req.int_arg("page", 1)
        chosen, last = page_slice(items, page, per_page)
        base, path, query = self.app.base_url, req.path, req.query
        links = []
        if page > 1:
            links.append(f'<{page_url(base, path, query, {"page": min(page - 1, last)})}>; rel="prev"')
        if page < last:
            links.append(f'<{page_url(base, path, query, {"page": page + 1})}>; rel="next"')
        links.append(f'<{page_url(base, path, query, {"page": 1})}>; rel="first"')
        links.append(f'<{page_url(base, path, query, {"page": last})}>; rel="last"')
        headers = [
            ("Link", ", ".join(links)), ("X-Page", str(page)), ("X-Per-Page", str(per_page)),
            ("X-Next-Page", str(page + 1) if page < last else ""),
            ("X-Prev-Page", str(min(page - 1, last)) if page > 1 else ""),
            ("X-Total", str(len(items))), ("X-Total-Pages", str(last)),
        ]
        return json_response(200, [shape(item) for item in chosen], headers)


def prefixes(path):
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
