"""Gitea/Forgejo's write endpoints, in the shapes of forgejo-swagger.v1.json (`CreateRepoOption`,
`EditRepoOption`, `RepoTopicOptions`, `CreateLabelOption`, `CreateMilestoneOption`,
`CreateIssueOption`, `EditIssueOption`, `CreateIssueCommentOption`, `CreatePullRequestOption`,
`EditPullRequestOption`, `CreatePullReviewOptions`, `CreateReleaseOption`, a multipart
`attachment`), with Gitea's status codes: 201 for creations and for issue and pull request edits
(as Gitea answers them), 409 for a taken repository name or a duplicate pull request, 422
`APIValidationError` (`message`, `url`) for bad input, 404 for a missing branch.

They edit the same GitHub-shaped world entries as the GitHub writes (repo_writes.py), from which
gitea_meta.py serves the read side: labels and milestones are named by id in Gitea's bodies and
mapped to the world's names and numbers here."""

import email.parser
import email.policy
import re

import github_data
from core import Response, can_see, json_response, unquote
from gitea_meta import number_arg, permission
from repo_writes import add, add_asset, add_repo, add_to_item, now, set_item, set_milestone, set_release, set_repo

COLOR = re.compile(r"^#?(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
TOPIC = re.compile(r"^[a-z0-9][a-z0-9-.]{0,34}$")
REVIEW_EVENTS = {"APPROVED": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED",
                 "PENDING": "PENDING"}


class Writes:
    def __init__(self, forge):
        self.forge = forge
        self.app = forge.app
        self.meta = forge.meta

    def error(self, status, message, **extra):
        return json_response(status, dict({"message": message, "url": self.forge.swagger()}, **extra))

    def refused(self, repo, level):
        identity = self.req.identity
        if identity is None:
            return self.error(401, "token is required")
        if not identity.write:
            return self.error(403, "token does not have at least one of required scope(s): [write:repository]")
        if repo is not None:
            held = permission(repo, identity) or "admin"
            if not github_data.level_at_least(held, level):
                return self.error(403, "user should have specific permission or be a site admin")
        return None

    def body(self):
        data = self.req.json()
        if not isinstance(data, dict):
            return None, self.error(422, "invalid JSON body")
        return data, None

    def handle(self, req, seg):
        self.req = req
        seg = [unquote(s) for s in seg]
        with self.app.write_lock:
            match (req.method, seg):
                case ("POST", ["user", "repos"]):
                    return self.create_repo(None)
                case ("POST", ["orgs", org, "repos"]):
                    return self.create_repo(org)
                case (_, ["repos", owner, name, *rest]):
                    repo = self.forge.find_repo(owner, name)
                    if repo is None or not can_see(req.identity, repo):
                        return self.forge.not_found()
                    return self.repo_routes(req.method, repo, rest)
        return None

    def fresh(self, repo):
        repo = self.forge.find_repo(repo.owner, repo.name)
        return repo, self.meta.model(repo)

    def repo_routes(self, method, repo, rest):
        model = self.meta.model(repo)
        number = number_arg(rest[1]) if len(rest) > 1 else None
        pulls = {n for n, i in model.issues.items() if i.pull is not None}
        match (method, rest):
            case ("PATCH", []):
                return self.edit_repo(repo)
            case ("PUT", ["topics"]):
                return self.put_topics(repo)
            case ("POST", ["labels"]):
                return self.create_label(repo, model)
            case ("POST", ["milestones"]):
                return self.create_milestone(repo, model)
            case ("PATCH", ["milestones", _]) if self.milestone_number(model, number) is not None:
                return self.edit_milestone(repo, model, self.milestone_number(model, number))
            case ("POST", ["issues"]):
                return self.create_item(repo, model, pull=False)
            case ("PATCH", ["issues", _]) if number in model.issues:
                return self.edit_item(repo, model, number, pull=False)
            case ("PUT", ["issues", _, "labels"]) if number in model.issues:
                return self.replace_labels(repo, model, number)
            case ("POST", ["issues", _, "comments"]) if number in model.issues:
                return self.create_comment(repo, model, number)
            case ("POST", ["pulls"]):
                return self.create_item(repo, model, pull=True)
            case ("PATCH", ["pulls", _]) if number in pulls:
                return self.edit_item(repo, model, number, pull=True)
            case ("POST", ["pulls", _, "reviews"]) if number in pulls:
                return self.create_review(repo, model, number)
            case ("POST", ["releases"]):
                return self.create_release(repo, model)
            case ("PATCH", ["releases", _]) if any(r.id == number for r in model.releases):
                return self.edit_release(repo, model, number)
            case ("POST", ["releases", _, "assets"]) if any(r.id == number for r in model.releases):
                return self.upload_attachment(repo, model, number)
        return None

    @staticmethod
    def milestone_number(model, milestone_id):
        return next((m.number for m in model.milestones.values() if m.id == milestone_id), None)

    # Repositories.

    def create_repo(self, org):
        identity = self.req.identity
        if identity is None:
            return self.error(401, "token is required")
        if org is not None:
            name, is_org = self.forge.find_account(org)
            if name is None or not is_org:
                return self.forge.not_found()
            members = self.forge.orgs()[name]
            if members and identity.login.lower() not in [m.lower() for m in members]:
                return self.error(403, "Given user is not allowed to create repository in organization.")
            owner = name
        else:
            owner, _ = self.forge.find_account(identity.login)
            owner = owner or identity.login
        refused = self.refused(None, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        name = data.get("name")
        if not isinstance(name, str) or not re.match(r"^[\w.-]+$", name):
            return self.error(422, "[Name]: Required" if not name else "[Name]: AlphaDashDot")
        if self.forge.find_repo(owner, name) is not None:
            return self.error(409, "The repository with the same name already exists.")
        entry = {"owner": owner, "name": name, "private": bool(data.get("private", False)),
                 "description": data.get("description") or "", "default_branch": data.get("default_branch") or "main",
                 "created_at": now(), "id": self.app.new_id()}
        add_repo(self.app, "gitea", entry)
        repo = self.forge.find_repo(owner, name)
        return json_response(201, self.forge.repo_shape(repo, identity))

    def edit_repo(self, repo):
        refused = self.refused(repo, "admin")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        fields = {key: data[key] for key in ("description", "website", "private", "has_issues", "has_wiki",
                                             "archived") if key in data}
        if "default_branch" in data:
            branch = data["default_branch"]
            git_dir = repo.git_path(self.app.root)
            if github_data.branch_sha(git_dir, branch):
                fields["default_branch"] = branch
                with open(f"{git_dir}/HEAD", "w", encoding="ascii") as f:
                    f.write(f"ref: refs/heads/{branch}\n")
            # Gitea ignores a default branch that does not exist.
        fields["updated_at"] = now()
        set_repo(self.app, repo, fields)
        repo, _ = self.fresh(repo)
        return json_response(200, self.forge.repo_shape(repo, self.req.identity))

    def put_topics(self, repo):
        refused = self.refused(repo, "admin")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        topics = [str(t).strip().lower() for t in data.get("topics") or []]
        invalid = [t for t in topics if not TOPIC.match(t)]
        if invalid:
            return json_response(422, {"invalidTopics": invalid, "message": "Topic names are invalid"})
        set_repo(self.app, repo, {"topics": list(dict.fromkeys(topics))})
        return Response(204, b"", content_type=None)

    # Labels and milestones.

    def create_label(self, repo, model):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        name, color = data.get("name"), data.get("color")
        if not name or not color:
            return self.error(422, "[Name]: Required" if not name else "[Color]: Required")
        if not COLOR.match(color.strip()):
            return self.error(422, f"bad color code: {color.strip().lower()}")
        color = color.strip().lower().lstrip("#")
        if len(color) == 3:
            color = "".join(c * 2 for c in color)
        add(self.app, repo, "labels", {"name": name, "color": color, "description": data.get("description") or ""})
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.label(model, name))

    def create_milestone(self, repo, model):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        title = data.get("title")
        if not title:
            return self.error(422, "[Title]: Required")
        number = max(model.milestones, default=0) + 1
        at = now()
        state = "closed" if data.get("state") == "closed" else "open"
        add(self.app, repo, "milestones", {
            "number": number, "id": self.app.new_id(), "title": title, "state": state,
            "description": data.get("description") or "", "due_on": data.get("due_on"), "created_at": at,
            "updated_at": at, "closed_at": at if state == "closed" else None})
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.milestone(model, number))

    def edit_milestone(self, repo, model, number):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        at = now()
        fields = {key: data[key] for key in ("title", "description", "due_on") if key in data}
        if data.get("state") in ("open", "closed"):
            fields.update({"state": data["state"], "closed_at": at if data["state"] == "closed" else None})
        fields["updated_at"] = at
        set_milestone(self.app, repo, number, fields)
        repo, model = self.fresh(repo)
        return json_response(200, self.meta.milestone(model, number))

    # Issues, pull requests, comments, reviews.

    def item_fields(self, data, model):
        """Labels (ids) and milestone (id) of a body as the world's names and number; or (None,
        the 422)."""
        fields = {}
        if data.get("labels") is not None:
            by_id = {label.id: label.name for label in model.labels.values()}
            unknown = [i for i in data["labels"] if i not in by_id]
            if unknown:
                return None, self.error(422, f"label does not exist [id: {unknown[0]}]")
            fields["labels"] = [by_id[i] for i in data["labels"]]
        if "assignees" in data or "assignee" in data:
            fields["assignees"] = list(data.get("assignees") or ([data["assignee"]] if data.get("assignee") else []))
        if "milestone" in data:
            milestone = data["milestone"]
            if milestone in (None, 0):
                fields["milestone"] = None
            else:
                number = self.milestone_number(model, milestone)
                if number is None:
                    return None, self.error(422, f"milestone does not exist [id: {milestone}, repo_id: 0]")
                fields["milestone"] = number
        return fields, None

    def create_item(self, repo, model, pull):
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        title = data.get("title")
        if not title:
            return self.error(422, "[Title]: Required")
        fields, bad = self.item_fields(data, model)
        if bad:
            return bad
        number = max(model.issues, default=0) + 1
        at = now()
        entry = {"number": number, "id": self.app.new_id(), "title": title, "body": data.get("body") or "",
                 "user": self.req.identity.login, "state": "open", "created_at": at, "updated_at": at,
                 "comments": []}
        entry.update(fields)
        if pull:
            head, base = data.get("head") or "", data.get("base") or ""
            git_dir = repo.git_path(self.app.root)
            head_sha = github_data.branch_sha(git_dir, head.rpartition(":")[2])
            base_sha = github_data.branch_sha(git_dir, base)
            if head_sha is None or base_sha is None:
                return self.forge.not_found()
            head = head.rpartition(":")[2]
            for other in model.issues.values():
                if other.pull and other.state == "open" and (other.pull.head, other.pull.base) == (head, base):
                    return self.error(409, f"pull request already exists for these targets [id: {other.pull.id}, "
                                           f"issue_id: {other.id}, head_repo_id: {repo.id}, base_repo_id: {repo.id}, "
                                           f"head_branch: {head}, base_branch: {base}]")
            entry.update({"pull_id": self.app.new_id(), "head": head, "base": base, "head_sha": head_sha,
                          "base_sha": base_sha, "reviews": [], "review_comments": []})
            add(self.app, repo, "pulls", entry)
        else:
            if data.get("closed"):
                entry.update({"state": "closed", "closed_at": at, "closed_by": self.req.identity.login})
            add(self.app, repo, "issues", entry)
        return self.item_answer(repo, number, pull)

    def item_answer(self, repo, number, pull):
        """201 (Gitea answers its issue and pull request edits with 201 too) with the item in the
        shape of the endpoint: a `PullRequest` under /pulls, an `Issue` under /issues."""
        repo, model = self.fresh(repo)
        issue = model.issues[number]
        if pull:
            return json_response(201, self.meta.pull(model, issue, self.forge.repo_shape(repo, self.req.identity)))
        return json_response(201, self.meta.issue(model, issue))

    def edit_item(self, repo, model, number, pull):
        issue = model.issues[number]
        author = self.req.identity is not None and self.req.identity.login.lower() == issue.user.lower()
        refused = self.refused(repo, "pull" if author else "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        fields, bad = self.item_fields(data, model)
        if bad:
            return bad
        fields.update({key: data[key] for key in ("title", "body") if key in data})
        at = now()
        state = data.get("state")
        if state in ("open", "closed") and state != issue.state:
            fields.update({"state": state, "closed_at": at if state == "closed" else None,
                           "closed_by": self.req.identity.login if state == "closed" else None})
        fields["updated_at"] = at
        set_item(self.app, repo, model, number, fields)
        return self.item_answer(repo, number, pull)

    def replace_labels(self, repo, model, number):
        """`IssueLabelsOption`: the labels by id (or by name, which Gitea accepts too); 200 with
        the item's labels."""
        issue = model.issues[number]
        author = self.req.identity is not None and self.req.identity.login.lower() == issue.user.lower()
        refused = self.refused(repo, "pull" if author else "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        wanted = data.get("labels") or []
        names = {w.lower() for w in wanted if isinstance(w, str)}
        ids = [w for w in wanted if isinstance(w, int)]
        ids += [label.id for label in model.labels.values() if label.name.lower() in names]
        fields, bad = self.item_fields({"labels": ids}, model)
        if bad:
            return bad
        set_item(self.app, repo, model, number, dict(fields, updated_at=now()))
        repo, model = self.fresh(repo)
        return json_response(200, [self.meta.label(model, name) for name in model.issues[number].labels])

    def create_comment(self, repo, model, number):
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        if not data.get("body"):
            return self.error(422, "[Body]: Required")
        at = now()
        cid = self.app.new_id()
        add_to_item(self.app, repo, model, number, "comments",
                    {"id": cid, "user": self.req.identity.login, "body": data["body"], "created_at": at,
                     "updated_at": at}, {"updated_at": at})
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.comment(model, model.comments_by_id[cid]))

    def create_review(self, repo, model, number):
        refused = self.refused(repo, "pull")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        issue = model.issues[number]
        event = data.get("event") or "PENDING"
        body = data.get("body") or ""
        own = self.req.identity.login.lower() == issue.user.lower()
        # What Gitea's API answers (routers/api/v1/repo/pull_review.go).
        if event == "APPROVED" and own:
            return self.error(422, "approve your own pull is not allowed")
        if event == "REQUEST_CHANGES" and own:
            return self.error(422, "reject your own pull is not allowed")
        if event not in REVIEW_EVENTS:
            event = "PENDING"
        if event in ("REQUEST_CHANGES", "COMMENT") and not body.strip() and not data.get("comments"):
            return self.error(422, f"review event {event} requires a body")
        at = now()
        rid = self.app.new_id()
        commit = data.get("commit_id") or issue.pull.head_sha
        add_to_item(self.app, repo, model, number, "reviews",
                    {"id": rid, "user": self.req.identity.login, "state": REVIEW_EVENTS[event], "body": body,
                     "submitted_at": at, "commit_id": commit}, {"updated_at": at})
        for comment in data.get("comments") or []:
            repo, model = self.fresh(repo)
            line = comment.get("new_position") or comment.get("old_position") or 1
            add_to_item(self.app, repo, model, number, "review_comments", {
                "id": self.app.new_id(), "user": self.req.identity.login, "body": comment.get("body", ""),
                "path": comment.get("path"), "position": line, "line": line, "commit_id": commit,
                "pull_request_review_id": rid, "created_at": at, "updated_at": at})
        repo, model = self.fresh(repo)
        issue = model.issues[number]
        review = next(r for r in issue.pull.reviews if r.id == rid)
        return json_response(200, self.meta.review(model, issue, review))

    # Releases and attachments.

    def create_release(self, repo, model):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        tag = data.get("tag_name")
        if not tag:
            return self.error(422, "[TagName]: Required")
        if any(r.tag == tag for r in model.releases):
            return self.error(409, f"release tag already exist [tag_name: {tag}]")
        at = now()
        rid = self.app.new_id()
        draft = bool(data.get("draft", False))
        add(self.app, repo, "releases", {
            "id": rid, "tag_name": tag, "name": data.get("name") or tag, "body": data.get("body") or "",
            "draft": draft, "prerelease": bool(data.get("prerelease", False)),
            "target_commitish": data.get("target_commitish") or repo.default_branch,
            "author": self.req.identity.login, "created_at": at, "published_at": None if draft else at,
            "assets": []})
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.release(model, next(r for r in model.releases if r.id == rid)))

    def edit_release(self, repo, model, rid):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        data, bad = self.body()
        if bad:
            return bad
        release = next(r for r in model.releases if r.id == rid)
        fields = {key: data[key] for key in ("name", "body", "prerelease", "target_commitish", "tag_name")
                  if key in data}
        if "draft" in data:
            fields["draft"] = bool(data["draft"])
            if release.draft and not data["draft"]:
                fields["published_at"] = now()
        set_release(self.app, repo, release, fields)
        repo, model = self.fresh(repo)
        return json_response(200, self.meta.release(model, next(r for r in model.releases if r.id == rid)))

    def upload_attachment(self, repo, model, rid):
        refused = self.refused(repo, "push")
        if refused:
            return refused
        release = next(r for r in model.releases if r.id == rid)
        filename, data = multipart_file(self.req.headers.get("Content-Type") or "", self.req.body, "attachment")
        if data is None:
            return self.error(400, "attachment is required")
        name = self.req.arg("name") or filename or "attachment"
        at = now()
        aid = self.app.new_id()
        add_asset(self.app, repo, release, {
            "id": aid, "name": name, "content_type": "application/octet-stream", "uploader": self.req.identity.login,
            "created_at": at, "updated_at": at}, data)
        repo, model = self.fresh(repo)
        return json_response(201, self.meta.attachment(model, model.assets[aid]))


def multipart_file(content_type, body, field):
    """(filename, bytes) of the part named `field` of a multipart/form-data body, or (None, None)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None, None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            return part.get_filename(), part.get_payload(decode=True)
    return None, None
