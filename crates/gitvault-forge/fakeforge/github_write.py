"""GitHub's write endpoints: create and edit repositories, labels, milestones, issues, comments,
pull requests, reviews, review comments, releases and release assets, in the request and answer
shapes of @octokit/openapi's api.github.com.json, with GitHub's status codes (201, 200, 422 with
`Validation Failed` and its `errors`, 403, 404). What they create is read back through the read
endpoints (github.py, github_meta.py): they edit the world (core.World.apply, repo_writes.py).

Permissions, as the read side models them: a token whose world entry has `"write": false` is
refused every write with 403; otherwise the owner is admin, a collaborator has its level, and a
token the world says nothing about may do anything.
"""

import re

import github_data
from core import can_see, json_response, unquote
from github_meta import permission
from repo_writes import add, add_asset, add_repo, add_to_item, now, set_item, set_milestone, set_release, set_repo

DOCS = "https://docs.github.com/rest"
COLOR = re.compile(r"^[0-9a-fA-F]{6}$")
TOPIC = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")
REVIEW_EVENTS = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}


class Writes:
    def __init__(self, forge):
        self.forge = forge
        self.app = forge.app
        self.meta = forge.meta

    # Errors in GitHub's shapes.

    def error(self, status, message, doc=DOCS, errors=None):
        body = {"message": message}
        if errors is not None:
            body["errors"] = errors
        body.update({"documentation_url": doc, "status": str(status)})
        return json_response(status, body)

    def invalid(self, resource, field, code="invalid", doc=DOCS, **extra):
        return self.error(422, "Validation Failed", doc, [dict({"resource": resource, "code": code, "field": field},
                                                                **extra)])

    def unprocessable(self, message, doc=DOCS):
        """GitHub's other 422 shape: `errors` is a list of sentences."""
        return self.error(422, "Unprocessable Entity", doc, [message])

    def refused(self, repo, level):
        """The answer refusing the caller a write that needs `level` on `repo`, or None."""
        identity = self.req.identity
        if identity is None:
            return self.error(401, "Requires authentication")
        if not identity.write:
            return self.error(403, "Resource not accessible by personal access token")
        if repo is None:
            return None
        # The world says nothing about the token: every right, as on the read side.
        held = permission(repo, identity) or "admin"
        if not github_data.level_at_least(held, level):
            return self.error(403, f"Must have {level} rights to Repository.")
        return None

    def body(self):
        """The request's JSON object, or (None, the 400 answer)."""
        data = self.req.json()
        if not isinstance(data, dict):
            return None, self.error(400, "Problems parsing JSON")
        return data, None

    # Routes.

    def handle(self, req, seg):
        self.req = req
        seg = [unquote(s) for s in seg]
        method = req.method
        with self.app.write_lock:
            match (method, seg):
                case ("POST", ["user", "repos"]):
                    return self.create_repo(None)
                case ("POST", ["orgs", org, "repos"]):
                    return self.create_repo(org)
                case ("POST", ["uploads", "repos", owner, name, "releases", rid, "assets"]):
                    repo = self.visible(owner, name)
                    return self.upload_asset(repo, rid) if repo else self.forge.not_found()
                case (_, ["repos", owner, name, *rest]):
                    repo = self.visible(owner, name)
                    if repo is None:
                        return self.forge.not_found()
                    return self.repo_routes(method, repo, rest)
        return None

    def visible(self, owner, name):
        repo = self.forge.find_repo(owner, name)
        return repo if repo is not None and can_see(self.req.identity, repo) else None

    def fresh(self, repo):
        """`repo` again after an edit (a new world entry), and its model."""
        repo = self.forge.find_repo(repo.owner, repo.name)
        return repo, self.meta.model(repo)

    def repo_routes(self, method, repo, rest):
        model = self.meta.model(repo)
        number = github_data_number(rest[1]) if len(rest) > 1 else None
        match (method, rest):
            case ("PATCH", []):
                return self.edit_repo(repo)
            case ("PUT", ["topics"]):
                return self.put_topics(repo)
            case ("POST", ["labels"]):
                return self.create_label(repo, model)
            case ("POST", ["milestones"]):
                return self.create_milestone(repo, model)
            case ("PATCH", ["milestones", _]) if number in model.milestones:
                return self.edit_milestone(repo, model, number)
            case ("POST", ["issues"]):
                return self.create_issue(repo, model)
            case ("PATCH", ["issues", _]) if number in model.issues:
                return self.edit_issue(repo, model, number, pull=False)
            case ("POST", ["issues", _, "comments"]) if number in model.issues:
                return self.create_comment(repo, model, number)
            case ("POST", ["pulls"]):
                return self.create_pull(repo, model)
            case ("PATCH", ["pulls", _]) if number in model.issues and model.issues[number].pull:
                return self.edit_issue(repo, model, number, pull=True)
            case ("POST", ["pulls", _, "reviews"]) if number in model.issues and model.issues[number].pull:
                return self.create_review(repo, model, number)
            case ("POST", ["pulls", _, "comments"]) if number in model.issues and model.issues[number].pull:
                return self.create_review_comment(repo, model, number)
            case ("POST", ["releases"]):
                return self.create_release(repo, model)
            case ("PATCH", ["releases", _]) if any(r.id == number for r in model.releases):
                return self.edit_release(repo, model, number)
        return None

    # Repositories.

    def create_repo(self, org):
        doc = DOCS + ("/repos/repos#create-an-organization-repository" if org else
                      "/repos/repos#create-a-repository-for-the-authenticated-user")
        identity = self.req.identity
        if identity is None:
            return self.error(401, "Requires authentication", doc)
        if org is not None:
            login, entry = self.forge.account(org)
            if login is None or entry.get("type") != "Organization":
                return self.forge.not_found()
            members = entry.get("members")
            if members is not None and identity.login.lower() not in [m.lower() for m in members]:
                return self.error(403, "You need admin access to the organization before adding a repository "
                                       "to it.", doc)
            owner = login
        else:
            owner, _ = self.forge.account(identity.login)
            owner = owner or identity.login
        refused = self.refused(None, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        name = data.get("name")
        if not isinstance(name, str) or not name:
            return self.invalid("Repository", "name", "missing_field", doc)
        if self.forge.find_repo(owner, name) is not None:
            return self.error(422, "Repository creation failed.", doc, [
                {"resource": "Repository", "code": "custom", "field": "name",
                 "message": "name already exists on this account"}])
        visibility = data.get("visibility") or ("private" if data.get("private") else "public")
        entry = {"owner": owner, "name": name, "private": visibility != "public", "visibility": visibility,
                 "description": data.get("description") or "", "homepage": data.get("homepage"),
                 "has_issues": data.get("has_issues", True), "has_wiki": data.get("has_wiki", True),
                 "created_at": now(), "id": self.app.new_id()}
        add_repo(self.app, "github", entry)
        repo = self.forge.find_repo(owner, name)
        return json_response(201, self.forge.repo_shape(repo, "full", identity),
                             [("Location", self.forge.api(f"/repos/{repo.full_name}"))])

    def edit_repo(self, repo):
        doc = DOCS + "/repos/repos#update-a-repository"
        refused = self.refused(repo, "admin")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        fields = {}
        for key in ("description", "homepage", "has_issues", "has_wiki", "archived"):
            if key in data:
                fields[key] = data[key] if key != "description" else (data[key] or "")
        if "visibility" in data or "private" in data:
            visibility = data.get("visibility") or ("private" if data.get("private") else "public")
            fields.update({"visibility": visibility, "private": visibility != "public"})
        if "default_branch" in data:
            branch = data["default_branch"]
            if not github_data.branch_sha(repo.git_path(self.app.root), branch):
                return self.invalid("Repository", "default_branch", doc=doc)
            fields["default_branch"] = branch
            set_head(repo.git_path(self.app.root), branch)
        fields["updated_at"] = now()
        set_repo(self.app, repo, fields)
        repo, _ = self.fresh(repo)
        return json_response(200, self.forge.repo_shape(repo, "full", self.req.identity))

    def put_topics(self, repo):
        refused = self.refused(repo, "admin")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        names = data.get("names")
        if not isinstance(names, list):
            return self.invalid("Repository", "names", "missing_field", DOCS + "/repos/repos#replace-all-repository-"
                                                                          "topics")
        names = [str(n).lower() for n in names]
        for topic in names:
            if not TOPIC.match(topic):
                return self.error(422, "Validation Failed", DOCS + "/repos/repos#replace-all-repository-topics", [
                    {"resource": "Repository", "code": "invalid", "field": "topics",
                     "message": f"{topic} is not a valid topic. Topics must start with a lowercase letter or "
                                "number, consist of 50 characters or less, and can include hyphens."}])
        names = list(dict.fromkeys(names))
        set_repo(self.app, repo, {"topics": names})
        return json_response(200, {"names": names})

    # Labels and milestones.

    def create_label(self, repo, model):
        doc = DOCS + "/issues/labels#create-a-label"
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            return self.invalid("Label", "name", "missing_field", doc)
        color = data.get("color", "ededed")
        if not isinstance(color, str) or not COLOR.match(color):
            return self.invalid("Label", "color", doc=doc)
        if any(existing.lower() == name.lower() for existing in model.labels):
            return self.invalid("Label", "name", "already_exists", doc)
        add(self.app, repo, "labels", {"name": name, "color": color.lower(), "description": data.get("description")})
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.label(model, name),
                             [("Location", f"{model.context.api}/labels/{name}")])

    def create_milestone(self, repo, model):
        doc = DOCS + "/issues/milestones#create-a-milestone"
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        title = data.get("title")
        if not isinstance(title, str) or not title:
            return self.invalid("Milestone", "title", "missing_field", doc)
        if any(m.title == title for m in model.milestones.values()):
            return self.invalid("Milestone", "title", "already_exists", doc)
        state = data.get("state", "open")
        if state not in ("open", "closed"):
            return self.invalid("Milestone", "state", doc=doc)
        number = max(model.milestones, default=0) + 1
        at = now()
        add(self.app, repo, "milestones", {
            "number": number, "id": self.app.new_id(), "title": title, "state": state,
            "description": data.get("description"), "due_on": data.get("due_on"), "creator": self.req.identity.login,
            "created_at": at, "updated_at": at, "closed_at": at if state == "closed" else None})
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.milestone(model, number),
                             [("Location", f"{model.context.api}/milestones/{number}")])

    def edit_milestone(self, repo, model, number):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        fields = {key: data[key] for key in ("title", "description", "due_on") if key in data}
        at = now()
        if "state" in data:
            if data["state"] not in ("open", "closed"):
                return self.invalid("Milestone", "state", doc=DOCS + "/issues/milestones#update-a-milestone")
            fields["state"] = data["state"]
            fields["closed_at"] = at if data["state"] == "closed" else None
        fields["updated_at"] = at
        set_milestone(self.app, repo, number, fields)
        repo, model = self.fresh(repo)
        return json_response(200, self.meta.milestone(model, number))

    # Issues and comments.

    def item_fields(self, data, model, resource, doc):
        """The labels, assignees and milestone of an issue or pull request body, checked; or
        (None, the 422)."""
        fields = {}
        if "labels" in data:
            labels = data["labels"] or []
            # Labels are given by name (or as objects with a name); unknown ones are created.
            fields["labels"] = [label["name"] if isinstance(label, dict) else str(label) for label in labels]
        if "assignees" in data or "assignee" in data:
            assignees = data.get("assignees") or ([data["assignee"]] if data.get("assignee") else [])
            fields["assignees"] = list(assignees)
        if "milestone" in data:
            milestone = data["milestone"]
            if milestone is not None and (not isinstance(milestone, int) or milestone not in model.milestones):
                return None, self.invalid(resource, "milestone", doc=doc, value=milestone)
            fields["milestone"] = milestone
        return fields, None

    def create_issue(self, repo, model):
        doc = DOCS + "/issues/issues#create-an-issue"
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        if not repo.raw.get("has_issues", True):
            return self.error(410, "Issues are disabled for this repo", doc)
        data, bad = self.body()
        if bad:
            return bad
        title = data.get("title")
        if title is None or title == "":
            return self.invalid("Issue", "title", "missing_field", doc)
        fields, bad = self.item_fields(data, model, "Issue", doc)
        if bad:
            return bad
        number = max(model.issues, default=0) + 1
        at = now()
        entry = {"number": number, "id": self.app.new_id(), "title": str(title), "body": data.get("body"),
                 "user": self.req.identity.login, "state": "open", "created_at": at, "updated_at": at,
                 "comments": []}
        entry.update(fields)
        add(self.app, repo, "issues", entry)
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.issue(model, model.issues[number]),
                             [("Location", f"{model.context.api}/issues/{number}")])

    def edit_issue(self, repo, model, number, pull):
        doc = DOCS + ("/pulls/pulls#update-a-pull-request" if pull else "/issues/issues#update-an-issue")
        issue = model.issues[number]
        author = self.req.identity is not None and self.req.identity.login.lower() == issue.user.lower()
        refused = self.refused(repo, "pull" if author else "triage")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        fields, bad = self.item_fields(data, model, "PullRequest" if pull else "Issue", doc)
        if bad:
            return bad
        for key in ("title", "body"):
            if key in data:
                fields[key] = data[key]
        if pull and "base" in data:
            if not github_data.branch_sha(repo.git_path(self.app.root), data["base"]):
                return self.invalid("PullRequest", "base", doc=doc)
            fields["base"] = data["base"]
        at = now()
        state = data.get("state")
        if state is not None:
            if state not in ("open", "closed"):
                return self.invalid("PullRequest" if pull else "Issue", "state", doc=doc)
            if state != issue.state:
                fields.update({"state": state, "closed_at": at if state == "closed" else None,
                               "closed_by": self.req.identity.login if state == "closed" else None})
        if not pull and ("state_reason" in data or state is not None):
            reason = data.get("state_reason")
            final = state or issue.state
            if reason not in (None, "completed", "not_planned", "reopened", "duplicate"):
                return self.invalid("Issue", "state_reason", doc=doc)
            if final == "closed":
                fields["state_reason"] = reason or "completed"
            else:
                fields["state_reason"] = "reopened" if issue.state == "closed" else reason
        fields["updated_at"] = at
        set_item(self.app, repo, model, number, fields)
        repo, model = self.fresh(repo)
        issue = model.issues[number]
        if pull:
            return json_response(200, self.meta.pull(model, issue, self.forge.repo_shape(repo, "repository",
                                                                                        self.req.identity), full=True))
        return json_response(200, self.meta.issue(model, issue))

    def create_comment(self, repo, model, number):
        doc = DOCS + "/issues/comments#create-an-issue-comment"
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        body = data.get("body")
        if not isinstance(body, str) or not body:
            return self.invalid("IssueComment", "body", "missing_field", doc)
        at = now()
        cid = self.app.new_id()
        add_to_item(self.app, repo, model, number, "comments",
                    {"id": cid, "user": self.req.identity.login, "body": body, "created_at": at, "updated_at": at},
                    {"updated_at": at})
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.comment(model, model.comments_by_id[cid]),
                             [("Location", f"{model.context.api}/issues/comments/{cid}")])

    # Pull requests, reviews, review comments.

    def create_pull(self, repo, model):
        doc = DOCS + "/pulls/pulls#create-a-pull-request"
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        title = data.get("title")
        if not title:
            return self.invalid("PullRequest", "title", "missing_field", doc)
        head, base = data.get("head"), data.get("base")
        if not head:
            return self.invalid("PullRequest", "head", "missing_field", doc)
        if not base:
            return self.invalid("PullRequest", "base", "missing_field", doc)
        # `head` may name the owner (`owner:branch`), as for a pull request from a fork.
        head_owner, _, head_branch = head.rpartition(":")
        git_dir = repo.git_path(self.app.root)
        head_sha = github_data.branch_sha(git_dir, head_branch)
        if head_owner and head_owner.lower() != repo.owner.lower() or head_sha is None:
            return self.invalid("PullRequest", "head", doc=doc)
        base_sha = github_data.branch_sha(git_dir, base)
        if base_sha is None:
            return self.invalid("PullRequest", "base", doc=doc)
        if head_sha == base_sha:
            return self.error(422, "Validation Failed", doc, [
                {"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head_branch}"}])
        for other in model.issues.values():
            if other.pull and other.state == "open" and other.pull.head == head_branch and other.pull.base == base:
                return self.error(422, "Validation Failed", doc, [
                    {"resource": "PullRequest", "code": "custom",
                     "message": f"A pull request already exists for {repo.owner}:{head_branch}."}])
        number = max(model.issues, default=0) + 1
        at = now()
        add(self.app, repo, "pulls", {
            "number": number, "id": self.app.new_id(), "pull_id": self.app.new_id(), "title": title,
            "body": data.get("body"), "user": self.req.identity.login, "state": "open", "head": head_branch,
            "base": base, "head_sha": head_sha, "base_sha": base_sha, "draft": bool(data.get("draft", False)),
            "created_at": at, "updated_at": at, "comments": [], "reviews": [], "review_comments": []})
        repo, model = self.fresh(repo)
        body = self.meta.pull(model, model.issues[number], self.forge.repo_shape(repo, "repository",
                                                                                 self.req.identity), full=True)
        return json_response(201, body, [("Location", f"{model.context.api}/pulls/{number}")])

    def create_review(self, repo, model, number):
        doc = DOCS + "/pulls/reviews#create-a-review-for-a-pull-request"
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        issue = model.issues[number]
        event = data.get("event")
        body = data.get("body") or ""
        if event is not None and event not in REVIEW_EVENTS:
            return self.unprocessable(f"Unexpected event: {event}", doc)
        own = self.req.identity.login.lower() == issue.user.lower()
        if own and event == "APPROVE":
            return self.unprocessable("Can not approve your own pull request", doc)
        if own and event == "REQUEST_CHANGES":
            return self.unprocessable("Can not request changes on your own pull request", doc)
        if event in ("REQUEST_CHANGES", "COMMENT") and not body and not data.get("comments"):
            return self.unprocessable(f"Review Body is required for {event.replace('_', ' ').lower()} reviews", doc)
        at = now()
        rid = self.app.new_id()
        state = REVIEW_EVENTS.get(event, "PENDING")
        commit = data.get("commit_id") or issue.pull.head_sha
        add_to_item(self.app, repo, model, number, "reviews",
                    {"id": rid, "user": self.req.identity.login, "state": state, "body": body, "submitted_at": at,
                     "commit_id": commit}, {"updated_at": at})
        for comment in data.get("comments") or []:
            repo, model = self.fresh(repo)
            self.add_review_comment(repo, model, number, comment, rid, commit, at)
        repo, model = self.fresh(repo)
        review = next(r for r in model.issues[number].pull.reviews if r.id == rid)
        return json_response(200, self.meta.review(model, review))

    def add_review_comment(self, repo, model, number, data, review_id, commit, at):
        cid = self.app.new_id()
        line = data.get("line", data.get("position", 1))
        entry = {"id": cid, "user": self.req.identity.login, "body": data.get("body", ""),
                 "path": data.get("path"), "position": data.get("position", line), "line": line,
                 "side": data.get("side", "RIGHT"), "start_line": data.get("start_line"),
                 "start_side": data.get("start_side"), "commit_id": commit, "pull_request_review_id": review_id,
                 "in_reply_to_id": data.get("in_reply_to"), "created_at": at, "updated_at": at}
        add_to_item(self.app, repo, model, number, "review_comments", entry, {"updated_at": at})
        return cid

    def create_review_comment(self, repo, model, number):
        doc = DOCS + "/pulls/comments#create-a-review-comment-for-a-pull-request"
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        if not data.get("body"):
            return self.invalid("PullRequestReviewComment", "body", "missing_field", doc)
        pull = model.issues[number].pull
        reply_to = data.get("in_reply_to")
        if reply_to is not None:
            parent = next((c for c in pull.review_comments if c.id == reply_to), None)
            if parent is None:
                return self.forge.not_found()
            data = dict(data, path=parent.path, line=parent.line, position=parent.position, side=parent.side)
        elif not data.get("path") or not (data.get("line") or data.get("position")):
            field = "path" if not data.get("path") else "line"
            return self.invalid("PullRequestReviewComment", field, "missing_field", doc)
        # On GitHub a lone review comment comes with a review of its own (COMMENTED, no body).
        at = now()
        rid = self.app.new_id()
        commit = data.get("commit_id") or pull.head_sha
        add_to_item(self.app, repo, model, number, "reviews",
                    {"id": rid, "user": self.req.identity.login, "state": "COMMENTED", "body": "",
                     "submitted_at": at, "commit_id": commit})
        repo, model = self.fresh(repo)
        cid = self.add_review_comment(repo, model, number, data, rid, commit, at)
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.review_comment(model, model.review_comments_by_id[cid]),
                             [("Location", f"{model.context.api}/pulls/comments/{cid}")])

    # Releases and assets.

    def create_release(self, repo, model):
        doc = DOCS + "/releases/releases#create-a-release"
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        tag = data.get("tag_name")
        if not tag:
            return self.invalid("Release", "tag_name", "missing_field", doc)
        if any(r.tag == tag for r in model.releases):
            return self.invalid("Release", "tag_name", "already_exists", doc)
        at = now()
        rid = self.app.new_id()
        draft = bool(data.get("draft", False))
        add(self.app, repo, "releases", {
            "id": rid, "tag_name": tag, "name": data.get("name") or tag, "body": data.get("body"), "draft": draft,
            "prerelease": bool(data.get("prerelease", False)),
            "target_commitish": data.get("target_commitish") or repo.default_branch,
            "author": self.req.identity.login, "created_at": at, "published_at": None if draft else at,
            "assets": []})
        repo, model = self.fresh(repo)
        release = next(r for r in model.releases if r.id == rid)
        return json_response(201, self.meta.release(model, release),
                             [("Location", f"{model.context.api}/releases/{rid}")])

    def edit_release(self, repo, model, rid):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        release = next(r for r in model.releases if r.id == rid)
        fields = {key: data[key] for key in ("name", "body", "prerelease", "target_commitish") if key in data}
        if "tag_name" in data and data["tag_name"] != release.tag:
            if any(r.tag == data["tag_name"] for r in model.releases):
                return self.invalid("Release", "tag_name", "already_exists", DOCS + "/releases/releases#update-a-"
                                                                                   "release")
            fields["tag_name"] = data["tag_name"]
        if "draft" in data:
            fields["draft"] = bool(data["draft"])
            if release.draft and not data["draft"]:
                fields["published_at"] = now()
        set_release(self.app, repo, release, fields)
        repo, model = self.fresh(repo)
        release = next(r for r in model.releases if r.id == rid)
        return json_response(200, self.meta.release(model, release))

    def upload_asset(self, repo, rid):
        doc = DOCS + "/releases/assets#upload-a-release-asset"
        refused = self.refused(repo, "push")
        if refused:
            return refused
        model = self.meta.model(repo)
        release = next((r for r in model.releases if r.id == github_data_number(rid)), None)
        if release is None:
            return self.forge.not_found()
        name = self.req.arg("name")
        if not name:
            return self.error(422, "Validation Failed", doc, [
                {"resource": "ReleaseAsset", "code": "missing_field", "field": "name"}])
        content_type = self.req.headers.get("Content-Type")
        if not content_type:
            return self.error(422, "Validation Failed", doc, [
                {"resource": "ReleaseAsset", "code": "missing_field", "field": "content_type"}])
        if any(a.name == name for a in release.assets):
            return self.error(422, "Validation Failed", doc, [
                {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}])
        at = now()
        aid = self.app.new_id()
        add_asset(self.app, repo, release, {
            "id": aid, "name": name, "label": self.req.arg("label"), "content_type": content_type,
            "uploader": self.req.identity.login, "created_at": at, "updated_at": at}, self.req.body)
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.asset(model, model.assets[aid]))


def github_data_number(text):
    return int(text) if text.isdigit() else None


def set_head(git_dir, branch):
    """Point the bare repository's HEAD at `branch`, as a forge does when its default changes."""
    with open(f"{git_dir}/HEAD", "w", encoding="ascii") as f:
        f.write(f"ref: refs/heads/{branch}\n")
