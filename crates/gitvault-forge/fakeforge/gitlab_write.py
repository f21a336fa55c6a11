"""GitLab's write endpoints (REST API v4) as its documentation and its API answer them: projects,
labels, milestones, issues, merge requests, notes, merge request discussions (diff notes with a
position), releases, release links and project uploads.

Bodies are JSON, `application/x-www-form-urlencoded` (`key[]` for lists, `key[sub]` for one
level of nesting) or query parameters, as Grape takes them; uploads are multipart/form-data with
the part `file`. Answers: 201 with the created object (200 for `PUT`); a missing parameter 400
`{"error": "title is missing"}`; a model that does not validate 400 `{"message": {field:
[messages]}}`; what GitLab refuses with a sentence, that sentence (409 `Label already exists`,
`Release already exists`, the list of a merge request conflict).

Every write edits the project's entry under `gitlab.projects` in the world (`core.World.apply`),
from which gitlab.py and gitlab_meta.py serve the read side. Created items carry explicit iids,
ids and times, so a world rewrite does not move them."""

import datetime
import os
import re
import subprocess
import urllib.parse

from core import can_see, json_response, unquote
from gitea_write import multipart_file
from github_data import branch_sha
from gitlab_meta import number, public_release

# The CSS colour names GitLab accepts for labels besides `#RGB` and `#RRGGBB`, with the value it
# stores (the basic keywords; enough for a restore, which sends the hex values a backup holds).
CSS_COLORS = {
    "black": "#000000", "silver": "#c0c0c0", "gray": "#808080", "grey": "#808080", "white": "#ffffff",
    "maroon": "#800000", "red": "#ff0000", "purple": "#800080", "fuchsia": "#ff00ff", "green": "#008000",
    "lime": "#00ff00", "olive": "#808000", "yellow": "#ffff00", "navy": "#000080", "blue": "#0000ff",
    "teal": "#008080", "aqua": "#00ffff", "orange": "#ffa500",
}
HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
PROJECT_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
LINK_TYPES = ("other", "runbook", "image", "package")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tiff", ".ico", ".webp", ".svg")

# Access levels (Guest 10, Reporter 20, Developer 30, Maintainer 40) each write needs, as GitLab's
# permission table gives them.
GUEST, REPORTER, DEVELOPER, MAINTAINER = 10, 20, 30, 40

INSUFFICIENT_SCOPE = {
    "error": "insufficient_scope",
    "error_description": "The request requires higher privileges than provided by the access token.",
    "scope": "api",
}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def project_path(project):
    """The edit path of a project's world entry."""
    return ["gitlab", "projects", {"namespace": project.raw["namespace"], "name": project.raw["name"]}]


def names(value):
    """Labels as GitLab takes them: a comma-separated string or a list; blanks dropped, order
    kept, duplicates removed."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return list(dict.fromkeys(s for s in (str(v).strip() for v in items) if s))


def ids(value):
    items = value if isinstance(value, list) else str(value or "").split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def truthy(value):
    return value in (True, "true", "1", 1)


def resolve(git_dir, ref):
    """The commit `ref` names in the bare repository `git_dir` (a branch, a tag, a SHA), or None."""
    if not ref or not os.path.isdir(git_dir):
        return None
    out = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def slug(name):
    return re.sub(r"[^a-z0-9_.]+", "-", name.lower()).strip("-.") or "project"


def valid_date(value):
    try:
        datetime.date.fromisoformat(value)
        return True
    except (TypeError, ValueError):
        return False


class Writes:
    def __init__(self, forge):
        self.forge = forge
        self.app = forge.app
        self.meta = forge.meta

    # Requests.

    def params(self):
        """The request's parameters: the query, then the body (JSON or a form) over it; None when
        the body cannot be read."""
        data = {}
        self.merge_pairs(data, self.req.query)
        content_type = (self.req.headers.get("Content-Type") or "").lower()
        if content_type.startswith("multipart/"):
            return data
        if content_type.startswith("application/x-www-form-urlencoded"):
            self.merge_pairs(data, urllib.parse.parse_qsl(self.req.body.decode("utf-8", "replace"),
                                                          keep_blank_values=True))
            return data
        if self.req.body.strip():
            body = self.req.json()
            if not isinstance(body, dict):
                return None
            data.update(body)
        return data

    @staticmethod
    def merge_pairs(data, pairs):
        for key, value in pairs:
            if key.endswith("[]"):
                data.setdefault(key[:-2], []).append(value)
            elif "[" in key and key.endswith("]"):
                outer, _, inner = key[:-1].partition("[")
                data.setdefault(outer, {})[inner] = value
            else:
                data[key] = value

    def missing(self, data, *required):
        """400 `{"error": "a is missing, b is missing"}` for the required parameters not given."""
        absent = [name for name in required if data.get(name) in (None, "")]
        if absent:
            return json_response(400, {"error": ", ".join(f"{name} is missing" for name in absent)})
        return None

    @staticmethod
    def invalid(**fields):
        return json_response(400, {"message": fields})

    def refused(self, project, level):
        """403 when the world makes the caller a member below `level`; None otherwise (a caller the
        world says nothing about has every right)."""
        held = self.meta.level(project, self.meta.model(project), self.req.identity)
        if held is not None and held < level:
            return json_response(403, {"message": "403 Forbidden"})
        return None

    def fresh(self, project):
        project = self.forge.find_project(str(project.id))
        return project, self.meta.model(project)

    def handle(self, req, seg):
        self.req = req
        identity = req.identity
        if identity is None:
            return self.forge.unauthorized()
        if not identity.write:
            # A `read_api` token: GitLab's OAuth scope check, before any route.
            scope = ('Bearer realm="Protected by OAuth 2.0", error="insufficient_scope", '
                     'error_description="The request requires higher privileges than provided by the access token.", '
                     'scope="api"')
            return json_response(403, INSUFFICIENT_SCOPE, [("WWW-Authenticate", scope)])
        seg = [unquote(s) for s in seg]
        with self.app.write_lock:
            match (req.method, seg):
                case ("POST", ["projects"]):
                    return self.create_project()
                case (_, ["projects", key, *rest]):
                    project = self.forge.find_project(key)
                    if project is None or not can_see(req.identity, project):
                        return self.forge.not_found("Project")
                    try:
                        return self.project_routes(req.method, project, rest)
                    except LookupError as err:
                        # An item the world gives without the key an edit needs (an iid, a tag).
                        return json_response(404, {"message": f"404 {err}"})
        return None

    def project_routes(self, method, project, rest):
        model = self.meta.model(project)
        iid = number(rest[1]) if len(rest) > 1 else None
        match (method, rest):
            case ("PUT", []):
                return self.edit_project(project)
            case ("POST", [("archive" | "unarchive") as what]):
                return self.archive(project, what == "archive")
            case ("POST", ["labels"]):
                return self.create_label(project, model)
            case ("POST", ["milestones"]):
                return self.create_milestone(project, model)
            case ("PUT", ["milestones", _]):
                milestone = next((m for m in model.milestones.values() if m.id == iid), None)
                if milestone is None:
                    return self.forge.not_found("Milestone")
                return self.edit_milestone(project, model, milestone)
            case ("POST", ["issues"]):
                return self.create_issue(project, model)
            case ("POST", ["merge_requests"]):
                return self.create_merge_request(project, model)
            case (_, ["issues", _, *more]):
                if iid not in model.issues:
                    return self.forge.not_found("Issue")
                return self.item_routes(method, project, model, "issues", model.issues[iid], more)
            case (_, ["merge_requests", _, *more]):
                if iid not in model.merge_requests:
                    return self.forge.not_found("Merge Request")
                return self.item_routes(method, project, model, "merge_requests", model.merge_requests[iid], more)
            case ("POST", ["releases"]):
                return self.create_release(project, model)
            case (_, ["releases", tag, *more]):
                release = next((r for r in model.releases if r.tag == tag), None)
                if release is None:
                    return self.forge.not_found()
                if method == "PUT" and more == []:
                    return self.edit_release(project, model, release)
                if method == "POST" and more == ["assets", "links"]:
                    return self.create_link(project, model, release)
            case ("POST", ["uploads"]):
                return self.upload(project)
        return None

    def item_routes(self, method, project, model, field, item, more):
        match (method, more):
            case ("PUT", []):
                return self.edit_item(project, model, field, item)
            case ("POST", ["notes"]):
                return self.create_note(project, model, field, item)
            case ("POST", ["discussions"]) if field == "merge_requests":
                return self.create_discussion(project, model, item)
            case ("POST", ["discussions", discussion, "notes"]) if field == "merge_requests":
                return self.reply(project, model, item, discussion)
        return None

    # Projects.

    def group_level(self, namespace):
        """The caller's access level in group `namespace` and its parents as the world's group
        `members` give it; None when no group on the way lists members."""
        groups = self.forge.groups()
        parts = namespace.split("/")
        listed, level = False, 0
        for i in range(1, len(parts) + 1):
            group = groups.get("/".join(parts[:i]))
            for entry in (group.raw.get("members", []) if group else []):
                listed = True
                name, held = (entry, 30) if isinstance(entry, str) else (entry["username"],
                                                                         int(entry.get("access_level", 30)))
                if name.lower() == self.req.identity.login.lower():
                    level = max(level, held)
        return level if listed else None

    def create_project(self):
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        name, path = data.get("name"), data.get("path")
        if not name and not path:
            return json_response(400, {"error": "name, path are missing, at least one parameter must be provided"})
        path = str(path or slug(name))
        name = str(name or path)
        login = self.req.identity.login
        namespace_id = data.get("namespace_id", data.get("namespace"))
        not_valid = self.invalid(namespace=["is not valid"])
        if namespace_id in (None, ""):
            namespace = login
        else:
            group = self.forge.find_group(str(namespace_id))
            if group is not None:
                level = self.group_level(group.full_path)
                if level is not None and level < DEVELOPER:
                    return not_valid
                namespace = group.full_path
            elif str(namespace_id) in (str(self.forge.user_id(login)), login.lower(), login):
                namespace = login
            else:
                # GitLab refuses a namespace that is unknown or not the caller's the same way.
                return not_valid
        if not PROJECT_PATH.match(path) or path.endswith((".git", ".atom")):
            return self.invalid(path=["can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', "
                                      "end in '.git' or end in '.atom'"])
        taken = {}
        for other in self.forge.projects():
            if other.owner.lower() != namespace.lower():
                continue
            if other.raw.get("title", other.name).lower() == name.lower():
                taken["name"] = ["has already been taken"]
            if other.name.lower() == path.lower():
                taken["path"] = ["has already been taken"]
        if taken:
            return self.invalid(**taken)
        at = now()
        entry = {"namespace": namespace, "name": path, "title": name, "id": self.app.new_id(), "created_at": at,
                 "description": data.get("description") or "", "visibility": data.get("visibility") or "private",
                 "default_branch": data.get("default_branch") or "main"}
        for key in ("issues_enabled", "wiki_enabled", "merge_requests_enabled"):
            if key in data:
                entry[key] = truthy(data[key])
        topics = data.get("topics", data.get("tag_list"))
        if topics is not None:
            entry["topics"] = names(topics)
        self.app.world.apply([{"path": ["gitlab", "projects"], "append": entry}])
        project = self.forge.find_project(f"{namespace}/{path}")
        return json_response(201, self.forge.project_shape(project, self.req.identity))

    def edit_project(self, project):
        refused = self.refused(project, MAINTAINER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        fields = {}
        for key in ("description", "visibility"):
            if key in data:
                fields[key] = data[key] or ("" if key == "description" else "private")
        for key in ("issues_enabled", "wiki_enabled", "merge_requests_enabled"):
            if key in data:
                fields[key] = truthy(data[key])
        if "name" in data and data["name"]:
            fields["title"] = data["name"]
        topics = data.get("topics", data.get("tag_list"))
        if topics is not None:
            fields["topics"] = names(topics)
        branch = data.get("default_branch")
        if branch and branch != project.default_branch:
            git_dir = project.git_path(self.app.root)
            if branch_sha(git_dir, branch) is None:
                return json_response(400, {"message": "Could not set the default branch"})
            with open(os.path.join(git_dir, "HEAD"), "w", encoding="ascii") as f:
                f.write(f"ref: refs/heads/{branch}\n")
            fields["default_branch"] = branch
        if fields:
            self.app.world.apply([{"path": project_path(project), "set": fields}])
        project, _ = self.fresh(project)
        return json_response(200, self.forge.project_shape(project, self.req.identity))

    def archive(self, project, archived):
        refused = self.refused(project, MAINTAINER)
        if refused:
            return refused
        self.app.world.apply([{"path": project_path(project), "set": {"archived": archived}}])
        project, _ = self.fresh(project)
        return json_response(201, self.forge.project_shape(project, self.req.identity))

    # Labels and milestones.

    def create_label(self, project, model):
        refused = self.refused(project, REPORTER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        bad = self.missing(data, "name", "color")
        if bad:
            return bad
        name, color = str(data["name"]).strip(), str(data["color"]).strip()
        if name in model.labels:
            return json_response(409, {"message": "Label already exists"})
        if not HEX_COLOR.match(color):
            color = CSS_COLORS.get(color.lower())
            if color is None:
                return self.invalid(color=["must be a valid color code"])
        entry = {"name": name, "color": color, "description": data.get("description") or None,
                 "id": self.app.new_id()}
        if data.get("priority") not in (None, ""):
            entry["priority"] = int(data["priority"])
        self.app.world.apply([{"path": project_path(project) + ["labels"], "append": entry}])
        project, model = self.fresh(project)
        return json_response(201, self.meta.label(model, name, with_counts=True))

    def milestone_fields(self, data):
        fields = {}
        for key in ("title", "description"):
            if key in data:
                fields[key] = data[key] or ""
        for key in ("due_date", "start_date"):
            if key in data:
                if data[key] not in (None, "") and not valid_date(data[key]):
                    return None, json_response(400, {"error": f"{key} is invalid"})
                fields[key] = data[key] or None
        return fields, None

    def create_milestone(self, project, model):
        refused = self.refused(project, REPORTER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        bad = self.missing(data, "title")
        if bad:
            return bad
        fields, bad = self.milestone_fields(data)
        if bad:
            return bad
        if any(m.title == fields["title"] for m in model.milestones.values()):
            return self.title_taken()
        iid = max(model.milestones, default=0) + 1
        at = now()
        entry = dict(fields, iid=iid, id=self.app.new_id(), state="active", created_at=at, updated_at=at)
        self.app.world.apply([{"path": project_path(project) + ["milestones"], "append": entry}])
        project, model = self.fresh(project)
        return json_response(201, self.meta.milestone(project, model, iid))

    @staticmethod
    def title_taken():
        # lib/api/milestone_responses.rb renders the model's errors into a sentence.
        return json_response(400, {"message": 'Failed to create milestone {:title=>["already being used for another '
                                              'group or project milestone."]}'})

    def edit_milestone(self, project, model, milestone):
        refused = self.refused(project, REPORTER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        fields, bad = self.milestone_fields(data)
        if bad:
            return bad
        if "title" in fields and any(m.title == fields["title"] and m.iid != milestone.iid
                                     for m in model.milestones.values()):
            return self.invalid(title=["already being used for another group or project milestone."])
        event = data.get("state_event")
        if event in ("close", "activate"):
            fields["state"] = "closed" if event == "close" else "active"
        fields["updated_at"] = now()
        entries = project.raw.get("milestones", [])
        key = {"iid": milestone.iid} if any(e.get("iid") == milestone.iid for e in entries) else {
            "title": milestone.title}
        self.app.world.apply([{"path": project_path(project) + ["milestones", key], "set": fields}])
        project, model = self.fresh(project)
        return json_response(200, self.meta.milestone(project, model, milestone.iid))

    # Issues and merge requests.

    def item_fields(self, data, model, existing=None):
        """What issues and merge requests share in their bodies, as world fields: labels (names;
        unknown ones are created with GitLab's default colour by the read side), milestone (by
        id), assignees (by user id)."""
        fields = {}
        for key in ("title", "description"):
            if key in data:
                fields[key] = data[key] or ""
        if "labels" in data:
            fields["labels"] = names(data["labels"])
        if existing is not None and ("add_labels" in data or "remove_labels" in data):
            labels = fields.get("labels", list(existing.labels))
            labels += [n for n in names(data.get("add_labels")) if n not in labels]
            removed = names(data.get("remove_labels"))
            fields["labels"] = [n for n in labels if n not in removed]
        if "milestone_id" in data:
            wanted = str(data["milestone_id"] or "")
            fields["milestone"] = next((m.iid for m in model.milestones.values() if str(m.id) == wanted), None)
        if "assignee_ids" in data or "assignee_id" in data:
            wanted = ids(data["assignee_ids"]) if "assignee_ids" in data else ids(data["assignee_id"])
            fields["assignees"] = [u for u in (self.forge.find_user(i) for i in wanted if i != "0") if u]
        for key in ("confidential", "discussion_locked"):
            if key in data:
                fields[key] = truthy(data[key])
        return fields

    def create_issue(self, project, model):
        refused = self.refused(project, GUEST)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        bad = self.missing(data, "title")
        if bad:
            return bad
        iid = max(model.issues, default=0) + 1
        # GitLab takes `created_at` from administrators and project owners (imports, restores).
        at = data.get("created_at") or now()
        entry = {"iid": iid, "id": self.app.new_id(), "author": self.req.identity.login, "state": "opened",
                 "description": "", "labels": [], "assignees": [], "created_at": at, "updated_at": at, "notes": []}
        entry.update(self.item_fields(data, model))
        self.app.world.apply([{"path": project_path(project) + ["issues"], "append": entry}])
        project, model = self.fresh(project)
        return json_response(201, self.meta.issue(project, model, model.issues[iid]))

    def create_merge_request(self, project, model):
        refused = self.refused(project, DEVELOPER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        bad = self.missing(data, "title", "source_branch", "target_branch")
        if bad:
            return bad
        source, target = str(data["source_branch"]), str(data["target_branch"])
        if source == target:
            return json_response(409, {"message": ["You can't use same project/branch for source and target"]})
        git_dir = project.git_path(self.app.root)
        sha, base_sha = branch_sha(git_dir, source), branch_sha(git_dir, target)
        if sha is None or base_sha is None:
            which = "source_branch" if sha is None else "target_branch"
            return self.invalid(**{which: ["does not exist"]})
        for other in model.merge_requests.values():
            if other.state == "opened" and (other.source, other.target) == (source, target):
                return json_response(409, {"message": [
                    f"Another open merge request already exists for this source branch: !{other.iid}"]})
        iid = max(model.merge_requests, default=0) + 1
        at = data.get("created_at") or now()
        entry = {"iid": iid, "id": self.app.new_id(), "author": self.req.identity.login, "state": "opened",
                 "description": "", "labels": [], "assignees": [], "source_branch": source, "target_branch": target,
                 "sha": sha, "base_sha": base_sha, "created_at": at, "updated_at": at, "notes": [], "diff_notes": []}
        entry.update(self.item_fields(data, model))
        if "reviewer_ids" in data:
            entry["reviewers"] = [u for u in (self.forge.find_user(i) for i in ids(data["reviewer_ids"])) if u]
        self.app.world.apply([{"path": project_path(project) + ["merge_requests"], "append": entry}])
        project, model = self.fresh(project)
        return json_response(201, self.merge_request_answer(project, model, iid))

    def merge_request_answer(self, project, model, iid):
        body = self.meta.merge_request(project, model, model.merge_requests[iid], full=True)
        body["user"] = {"can_merge": True}
        return body

    def edit_item(self, project, model, field, item):
        author = item.author.lower() == self.req.identity.login.lower()
        refused = self.refused(project, GUEST if author else REPORTER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        fields = self.item_fields(data, model, existing=item)
        if field == "merge_requests" and data.get("target_branch"):
            fields["target_branch"] = data["target_branch"]
        at = data.get("updated_at") or now()
        event = data.get("state_event")
        if event == "close" and item.state == "opened":
            fields.update({"state": "closed", "closed_at": at, "closed_by": self.req.identity.login})
        elif event == "reopen" and item.state == "closed":
            fields.update({"state": "opened", "closed_at": None})
        fields["updated_at"] = at
        self.app.world.apply([{"path": project_path(project) + [field, {"iid": item.iid}], "set": fields}])
        project, model = self.fresh(project)
        if field == "issues":
            return json_response(200, self.meta.issue(project, model, model.issues[item.iid]))
        return json_response(200, self.merge_request_answer(project, model, item.iid))

    # Notes and discussions.

    def note_body(self, data):
        """The note's body, or the 400 GitLab answers: a missing `body` is Grape's, a blank one
        the note model's."""
        if data is None:
            return None, json_response(400, {"error": "body is not valid JSON"})
        if data.get("body") is None:
            return None, json_response(400, {"error": "body is missing"})
        if not str(data["body"]).strip():
            return None, self.invalid(note=["can't be blank"])
        return str(data["body"]), None

    def note_entry(self, data, body, **extra):
        at = data.get("created_at") or now()
        return dict({"id": self.app.new_id(), "author": self.req.identity.login, "body": body, "created_at": at,
                     "updated_at": at}, **extra)

    def note_answer(self, project, field, iid, note_id):
        project, model = self.fresh(project)
        item = (model.issues if field == "issues" else model.merge_requests)[iid]
        note = next(n for n in item.notes if n.id == note_id)
        return self.meta.note(project, item, note, "Issue" if field == "issues" else "MergeRequest")

    def create_note(self, project, model, field, item):
        refused = self.refused(project, GUEST)
        if refused:
            return refused
        data = self.params()
        body, bad = self.note_body(data)
        if bad:
            return bad
        entry = self.note_entry(data, body)
        if truthy(data.get("internal")):
            entry["internal"] = True
        self.app.world.apply([{"path": project_path(project) + [field, {"iid": item.iid}, "notes"], "append": entry}])
        return json_response(201, self.note_answer(project, field, item.iid, entry["id"]))

    def discussion_answer(self, project, iid, root_id):
        project, model = self.fresh(project)
        discussions = self.meta.discussions(project, model.merge_requests[iid])
        return next(d for d in discussions if d["notes"][0]["id"] == root_id)

    def create_discussion(self, project, model, mr):
        refused = self.refused(project, GUEST)
        if refused:
            return refused
        data = self.params()
        body, bad = self.note_body(data)
        if bad:
            return bad
        position = data.get("position")
        mr_path = project_path(project) + ["merge_requests", {"iid": mr.iid}]
        if not position:
            entry = self.note_entry(data, body, thread=True)
            self.app.world.apply([{"path": mr_path + ["notes"], "append": entry}])
            return json_response(201, self.discussion_answer(project, mr.iid, entry["id"]))
        if not isinstance(position, dict):
            return json_response(400, {"error": "position is invalid"})
        absent = [k for k in ("base_sha", "start_sha", "head_sha", "position_type") if not position.get(k)]
        if absent:
            return json_response(400, {"error": ", ".join(f"position[{k}] is missing" for k in absent)})
        if position["position_type"] != "text":
            return json_response(400, {"error": "position[position_type] does not have a valid value"})

        def line(key):
            value = position.get(key)
            return int(value) if value not in (None, "") else None

        new_path = position.get("new_path") or position.get("old_path")
        if not new_path or (line("new_line") is None and line("old_line") is None):
            # GitLab cannot place the note on the diff: the note's line code does not validate.
            return json_response(400, {"message": 'Note {:line_code=>["can\'t be blank", "must be a valid line code"]}'})
        entry = self.note_entry(data, body, old_path=position.get("old_path") or new_path, new_path=new_path,
                                old_line=line("old_line"), new_line=line("new_line"), head_sha=position["head_sha"],
                                base_sha=position["base_sha"], resolved=False)
        self.app.world.apply([{"path": mr_path + ["diff_notes"], "append": entry}])
        return json_response(201, self.discussion_answer(project, mr.iid, entry["id"]))

    def reply(self, project, model, mr, discussion_id):
        refused = self.refused(project, GUEST)
        if refused:
            return refused
        discussion = next((d for d in self.meta.discussions(project, mr) if d["id"] == discussion_id), None)
        if discussion is None:
            return self.forge.not_found("Discussion")
        data = self.params()
        body, bad = self.note_body(data)
        if bad:
            return bad
        root = discussion["notes"][0]
        mr_path = project_path(project) + ["merge_requests", {"iid": mr.iid}]
        if root["type"] == "DiffNote":
            p = root["position"]
            entry = self.note_entry(data, body, reply_to=root["id"], old_path=p["old_path"], new_path=p["new_path"],
                                    old_line=p["old_line"], new_line=p["new_line"], head_sha=p["head_sha"],
                                    base_sha=p["base_sha"])
            edits = [{"path": mr_path + ["diff_notes"], "append": entry}]
        else:
            entry = self.note_entry(data, body, reply_to=root["id"])
            edits = [{"path": mr_path + ["notes"], "append": entry}]
            if discussion["individual_note"]:
                # Replying to a single note turns it into a thread, as on GitLab.
                edits.append({"path": mr_path + ["notes", {"id": root["id"]}], "set": {"thread": True}})
        self.app.world.apply(edits)
        return json_response(201, self.note_answer(project, "merge_requests", mr.iid, entry["id"]))

    # Releases, links, uploads.

    def release_milestones(self, model, data):
        titles = names(data.get("milestones"))
        found = {m.title: m.iid for m in model.milestones.values()}
        unknown = [t for t in titles if t not in found]
        if unknown:
            return None, json_response(400, {"message": f"Milestone(s) not found: {', '.join(unknown)}"})
        return [found[t] for t in titles], None

    def link_entry(self, release_links, raw):
        """A release link's world entry, or the 400 GitLab answers for it."""
        bad = self.missing(raw, "name", "url")
        if bad:
            return None, bad
        link_type = raw.get("link_type") or "other"
        if link_type not in LINK_TYPES:
            return None, json_response(400, {"error": "link_type does not have a valid value"})
        taken = {}
        for other in release_links:
            if other.get("name") == raw["name"]:
                taken["name"] = ["has already been taken"]
            if other.get("url") == raw["url"]:
                taken["url"] = ["has already been taken"]
        if taken:
            return None, self.invalid(**taken)
        entry = {"id": self.app.new_id(), "name": raw["name"], "url": raw["url"], "link_type": link_type}
        filepath = raw.get("direct_asset_path") or raw.get("filepath")
        if filepath:
            entry["filepath"] = filepath if filepath.startswith("/") else "/" + filepath
        return entry, None

    def create_release(self, project, model):
        refused = self.refused(project, DEVELOPER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        bad = self.missing(data, "tag_name")
        if bad:
            return bad
        tag = str(data["tag_name"])
        if any(r.tag == tag for r in model.releases):
            return json_response(409, {"message": "Release already exists"})
        milestones, bad = self.release_milestones(model, data)
        if bad:
            return bad
        git_dir = project.git_path(self.app.root)
        sha = resolve(git_dir, f"refs/tags/{tag}")
        if sha is None:
            # A release of a tag that does not exist creates the tag at `ref`, as on GitLab.
            if not data.get("ref"):
                return json_response(422, {"message": "Ref is not specified"})
            sha = resolve(git_dir, data["ref"])
            if sha is None:
                return json_response(422, {"message": f"Target {data['ref']} is invalid"})
            subprocess.run(["git", "--git-dir", git_dir, "update-ref", f"refs/tags/{tag}", sha], check=True,
                           capture_output=True)
        links = []
        for raw in (data.get("assets") or {}).get("links") or []:
            entry, bad = self.link_entry(links, raw)
            if bad:
                return bad
            links.append(entry)
        at = now()
        entry = {"tag_name": tag, "name": data.get("name") or tag, "description": data.get("description") or "",
                 "author": self.req.identity.login, "created_at": at, "released_at": data.get("released_at") or at,
                 "commit_sha": sha, "milestones": milestones, "links": links}
        self.app.world.apply([{"path": project_path(project) + ["releases"], "append": entry}])
        return json_response(201, self.release_answer(project, tag))

    def release_answer(self, project, tag):
        project, model = self.fresh(project)
        release = next(r for r in model.releases if r.tag == tag)
        return public_release(self.meta.release(project, model, release))

    @staticmethod
    def release_path(project, tag):
        if not any(e.get("tag_name") == tag for e in project.raw.get("releases", [])):
            raise LookupError(f"release {tag} has no tag_name of its own in world.json, so the fake cannot edit it")
        return project_path(project) + ["releases", {"tag_name": tag}]

    def edit_release(self, project, model, release):
        refused = self.refused(project, DEVELOPER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        fields = {key: data[key] for key in ("name", "description", "released_at") if data.get(key) is not None}
        if "milestones" in data:
            fields["milestones"], bad = self.release_milestones(model, data)
            if bad:
                return bad
        self.app.world.apply([{"path": self.release_path(project, release.tag), "set": fields}])
        return json_response(200, self.release_answer(project, release.tag))

    def create_link(self, project, model, release):
        refused = self.refused(project, DEVELOPER)
        if refused:
            return refused
        data = self.params()
        if data is None:
            return json_response(400, {"error": "body is not valid JSON"})
        existing = [{"name": link.name, "url": self.meta.link(project, release, link)["url"]}
                    for link in release.links]
        entry, bad = self.link_entry(existing, data)
        if bad:
            return bad
        self.app.world.apply([{"path": self.release_path(project, release.tag) + ["links"], "append": entry}])
        project, model = self.fresh(project)
        release = next(r for r in model.releases if r.tag == release.tag)
        link = next(li for li in release.links if li.id == entry["id"])
        return json_response(201, self.meta.link(project, release, link))

    def upload(self, project):
        refused = self.refused(project, GUEST)
        if refused:
            return refused
        filename, data = multipart_file(self.req.headers.get("Content-Type") or "", self.req.body, "file")
        if data is None:
            return json_response(400, {"error": "file is missing"})
        # GitLab keeps a sanitised file name under a random secret.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename or "file")) or "file"
        secret = os.urandom(16).hex()
        relative = os.path.join("uploads", "gitlab", *project.owner.split("/"), project.name, secret, name)
        path = os.path.join(self.app.root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        upload_id = self.app.new_id()
        self.app.world.apply([{"path": project_path(project) + ["uploads"], "append": {
            "id": upload_id, "secret": secret, "name": name, "file": relative, "size": len(data),
            "uploader": self.req.identity.login, "created_at": now()}}])
        url = f"/uploads/{secret}/{name}"
        alt = name.rsplit(".", 1)[0] if "." in name else name
        markdown = f"![{alt}]({url})" if name.lower().endswith(IMAGE_SUFFIXES) else f"[{name}]({url})"
        return json_response(201, {"id": upload_id, "alt": alt, "url": url,
                                   "full_path": f"{self.forge.prefix}/-/project/{project.id}/uploads/{secret}/{name}",
                                   "markdown": markdown})
