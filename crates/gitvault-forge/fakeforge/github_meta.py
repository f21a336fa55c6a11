"""GitHub's repository metadata endpoints — issues, pull requests, reviews, comments, labels,
milestones, releases and their assets, topics, collaborators, teams, branch protection — in the
shapes of @octokit/openapi's api.github.com.json (`issue`, `issue-comment`, `pull-request-simple`,
`pull-request`, `pull-request-review`, `pull-request-review-comment`, `label`, `milestone`,
`release`, `release-asset`, `simple-user`, `collaborator`, `team`, `branch-protection`).

The data comes from `github_data` (a model per repository and world generation). Shapes that do
not depend on who asks or on the disk (issues, comments, review comments, labels, milestones) are
cached per model as JSON text, so a page of 100 generated issues is a slice and a join.
"""

import datetime
import email.utils
import hashlib
import json
import threading

import github
import github_data
from core import INVALID, Response, can_see, json_response, page_slice, quote, rfc3339

DOCS = "https://docs.github.com/rest"


def dumps(value):
    return json.dumps(value, separators=(",", ":"))


def time_field(value):
    return rfc3339(value) if value is not None else None


def http_date(value):
    return email.utils.format_datetime(value.astimezone(datetime.timezone.utc), usegmt=True)


def parse_since(value):
    """An ISO 8601 time (`Z`, an offset, or a bare date) as an aware datetime, or None."""
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def number_arg(text):
    return int(text) if text.isdigit() else None


class Context:
    """What every shape of one repository needs: its URLs and who is associated with it how."""

    def __init__(self, meta, repo):
        forge = meta.forge
        self.repo = repo
        self.api = forge.api(f"/repos/{repo.full_name}")
        self.html = forge.url(f"/github/{repo.full_name}")
        login, entry = forge.account(repo.owner)
        self.owner = login or repo.owner
        members = entry.get("members", []) if entry and entry.get("type") == "Organization" else []
        self.org = bool(entry and entry.get("type") == "Organization")
        self.members = {m.lower() for m in members}
        self.collaborators = {c.lower(): github_data.LEVELS.get(p, "push") for c, p in collaborators(repo)}

    def association(self, login):
        low = login.lower()
        if low == self.owner.lower():
            return "OWNER"
        if low in self.members:
            return "MEMBER"
        if low in self.collaborators:
            return "COLLABORATOR"
        return "NONE"


def collaborators(repo):
    """(login, permission) of the repository's world `collaborators` (logins or objects)."""
    out = []
    for entry in repo.raw.get("collaborators", []):
        if isinstance(entry, str):
            out.append((entry, "push"))
        else:
            out.append((entry["login"], entry.get("permission", "push")))
    return out


def permission(repo, identity):
    """The permission level ("pull" … "admin") the world gives `identity` on `repo`: admin for
    the owner, the level of a collaborator entry, else None (the world says nothing)."""
    if identity is None:
        return None
    if identity.login.lower() == repo.owner.lower():
        return "admin"
    for login, level in collaborators(repo):
        if login.lower() == identity.login.lower():
            return github_data.LEVELS.get(level, "push")
    return None


def may_push(repo, identity):
    """Whether `identity` has push access; a token the world says nothing about has it."""
    if identity is None:
        return False
    level = permission(repo, identity)
    return level is None or github_data.level_at_least(level, "push")


def permissions_object(level):
    return {name: github_data.level_at_least(level, name) for name in ("admin", "maintain", "push", "triage", "pull")}


class Metadata:
    """The metadata endpoints of the GitHub forge module; `handle` answers `repos/{o}/{r}/…`."""

    def __init__(self, forge):
        self.forge = forge
        self.lock = threading.Lock()
        self.generation = None
        self.models = {}
        self.users = {}

    # Caches, dropped whenever world.json changes.

    def sync(self):
        self.forge.app.world.current()
        generation = self.forge.app.world.file_generation
        with self.lock:
            if generation != self.generation:
                self.generation = generation
                self.models = {}
                self.users = {}

    def model(self, repo):
        self.sync()
        with self.lock:
            found = self.models.get(repo.key)
            # A write replaces the entry of the repository it changes, and only that one (see
            # core.apply_edit): a model is good as long as its entry is the same object.
            if found is not None and found.raw is not repo.raw:
                found = None
            if found is None:
                context = Context(self, repo)
                found = github_data.build(self.forge.app.root, repo, context.owner)
                found.context = context
                found.raw = repo.raw
                self.models[repo.key] = found
            return found

    def user(self, login):
        found = self.users.get(login)
        if found is None:
            name, entry = self.forge.account(login)
            found = self.forge.simple_user(name or login, entry or {"type": "User"})
            self.users[login] = found
        return found

    def cached(self, model, key, make):
        text = model.cache.get(key)
        if text is None:
            text = dumps(make())
            model.cache[key] = text
        return text

    # Shapes.

    def label(self, model, name):
        label = model.labels[name]
        return {"id": label.id, "node_id": github.node_id("Label", label.id),
                "url": f"{model.context.api}/labels/{quote(label.name)}", "name": label.name,
                "color": label.color, "default": label.default, "description": label.description}

    def milestone(self, model, number):
        m = model.milestones.get(number)
        if m is None:
            return None
        api = model.context.api
        return {
            "url": f"{api}/milestones/{m.number}", "html_url": f"{model.context.html}/milestone/{m.number}",
            "labels_url": f"{api}/milestones/{m.number}/labels", "id": m.id,
            "node_id": github.node_id("Milestone", m.id), "number": m.number, "title": m.title,
            "description": m.description, "creator": self.user(m.creator),
            "open_issues": m.open_issues, "closed_issues": m.closed_issues, "state": m.state,
            "created_at": rfc3339(m.created), "updated_at": rfc3339(m.updated), "due_on": time_field(m.due_on),
            "closed_at": time_field(m.closed),
        }

    def reactions(self, url):
        return {"url": url + "/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}

    def issue(self, model, issue):
        ctx = model.context
        api, n = ctx.api, issue.number
        url = f"{api}/issues/{n}"
        html = f"{ctx.html}/{'pull' if issue.pull else 'issues'}/{n}"
        assignees = [self.user(login) for login in issue.assignees]
        body = {
            "url": url, "repository_url": api, "labels_url": url + "/labels{/name}", "comments_url": url + "/comments",
            "events_url": url + "/events", "html_url": html, "id": issue.id,
            "node_id": github.node_id("Issue", issue.id), "number": n, "title": issue.title,
            "user": self.user(issue.user),
            "labels": [self.label(model, name) for name in issue.labels], "state": issue.state,
            "locked": issue.locked, "assignee": assignees[0] if assignees else None, "assignees": assignees,
            "milestone": self.milestone(model, issue.milestone), "comments": len(issue.comments),
            "created_at": rfc3339(issue.created), "updated_at": rfc3339(issue.updated),
            "closed_at": time_field(issue.closed), "author_association": ctx.association(issue.user),
            "active_lock_reason": issue.lock_reason, "body": issue.body,
            "closed_by": self.user(issue.closed_by) if issue.closed_by else None,
            "reactions": self.reactions(url), "timeline_url": url + "/timeline", "performed_via_github_app": None,
            "state_reason": issue.state_reason,
        }
        if issue.pull is not None:
            body["draft"] = issue.pull.draft
            pull = f"{ctx.html}/pull/{n}"
            body["pull_request"] = {"url": f"{api}/pulls/{n}", "html_url": pull, "diff_url": pull + ".diff",
                                    "patch_url": pull + ".patch", "merged_at": time_field(issue.pull.merged)}
        return body

    def comment(self, model, comment):
        ctx = model.context
        issue = model.issues[comment.number]
        url = f"{ctx.api}/issues/comments/{comment.id}"
        return {
            "url": url,
            "html_url": f"{ctx.html}/{'pull' if issue.pull else 'issues'}/{comment.number}#issuecomment-{comment.id}",
            "issue_url": f"{ctx.api}/issues/{comment.number}", "id": comment.id,
            "node_id": github.node_id("IssueComment", comment.id), "user": self.user(comment.user),
            "created_at": rfc3339(comment.created), "updated_at": rfc3339(comment.updated),
            "author_association": ctx.association(comment.user), "body": comment.body,
            "reactions": self.reactions(url), "performed_via_github_app": None,
        }

    def review(self, model, review):
        ctx = model.context
        html = f"{ctx.html}/pull/{review.number}#pullrequestreview-{review.id}"
        pull = f"{ctx.api}/pulls/{review.number}"
        body = {
            "id": review.id, "node_id": github.node_id("PullRequestReview", review.id), "user": self.user(review.user),
            "body": review.body, "state": review.state, "html_url": html, "pull_request_url": pull,
            "author_association": ctx.association(review.user),
            "_links": {"html": {"href": html}, "pull_request": {"href": pull}}, "commit_id": review.commit_id,
        }
        if review.state != "PENDING":
            body["submitted_at"] = rfc3339(review.submitted)
        return body

    def review_comment(self, model, c):
        ctx = model.context
        url = f"{ctx.api}/pulls/comments/{c.id}"
        html = f"{ctx.html}/pull/{c.number}#discussion_r{c.id}"
        pull = f"{ctx.api}/pulls/{c.number}"
        body = {
            "url": url, "pull_request_review_id": c.review_id, "id": c.id,
            "node_id": github.node_id("PullRequestReviewComment", c.id), "diff_hunk": c.diff_hunk, "path": c.path,
            "position": c.position, "original_position": c.original_position, "commit_id": c.commit_id,
            "original_commit_id": c.original_commit_id, "user": self.user(c.user), "body": c.body,
            "created_at": rfc3339(c.created), "updated_at": rfc3339(c.updated), "html_url": html,
            "pull_request_url": pull, "author_association": ctx.association(c.user),
            "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pull}},
            "reactions": self.reactions(url), "start_line": c.start_line, "original_start_line": c.start_line,
            "start_side": c.start_side, "line": c.line, "original_line": c.original_line, "side": c.side,
            "subject_type": "line",
        }
        if c.in_reply_to_id is not None:
            body["in_reply_to_id"] = c.in_reply_to_id
        return body

    def pull(self, model, issue, repo_body, full):
        """`pull-request-simple`, or `pull-request` when `full`; `repo_body` is the repository's
        shape for `head.repo` and `base.repo`, made once per request."""
        ctx = model.context
        pull, n, api = issue.pull, issue.number, ctx.api
        html = f"{ctx.html}/pull/{n}"
        owner = self.user(ctx.owner)
        assignees = [self.user(login) for login in issue.assignees]
        links = {"self": f"{api}/pulls/{n}", "html": html, "issue": f"{api}/issues/{n}",
                 "comments": f"{api}/issues/{n}/comments", "review_comments": f"{api}/pulls/{n}/comments",
                 "review_comment": f"{api}/pulls/comments{{/number}}", "commits": f"{api}/pulls/{n}/commits",
                 "statuses": f"{api}/statuses/{pull.head_sha}"}
        body = {
            "url": links["self"], "id": pull.id, "node_id": github.node_id("PullRequest", pull.id), "html_url": html,
            "diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": links["issue"],
            "commits_url": links["commits"], "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"], "comments_url": links["comments"],
            "statuses_url": links["statuses"], "number": n, "state": issue.state, "locked": issue.locked,
            "title": issue.title, "user": self.user(issue.user), "body": issue.body,
            "labels": [self.label(model, name) for name in issue.labels],
            "milestone": self.milestone(model, issue.milestone), "active_lock_reason": issue.lock_reason,
            "created_at": rfc3339(issue.created), "updated_at": rfc3339(issue.updated),
            "closed_at": time_field(issue.closed), "merged_at": time_field(pull.merged),
            "merge_commit_sha": pull.merge_commit_sha, "assignee": assignees[0] if assignees else None,
            "assignees": assignees, "requested_reviewers": [self.user(login) for login in pull.requested_reviewers],
            "requested_teams": [],
            "head": {"label": f"{ctx.owner}:{pull.head}", "ref": pull.head, "sha": pull.head_sha, "user": owner,
                     "repo": repo_body},
            "base": {"label": f"{ctx.owner}:{pull.base}", "ref": pull.base, "sha": pull.base_sha, "user": owner,
                     "repo": repo_body},
            "_links": {key: {"href": value} for key, value in links.items()},
            "author_association": ctx.association(issue.user), "auto_merge": None, "draft": pull.draft,
        }
        if full:
            merged = pull.merged is not None
            body.update({
                "merged": merged, "mergeable": None if issue.state == "closed" else True,
                "rebaseable": None if issue.state == "closed" else True,
                "mergeable_state": "unknown" if issue.state == "closed" else "clean",
                "merged_by": self.user(pull.merged_by) if merged and pull.merged_by else None,
                "comments": len(issue.comments), "review_comments": len(pull.review_comments),
                "maintainer_can_modify": False, "commits": 1, "additions": 0, "deletions": 0, "changed_files": 0,
            })
        return body

    def asset(self, model, asset):
        ctx = model.context
        size, digest = asset.stat()
        return {
            "url": f"{ctx.api}/releases/assets/{asset.id}", "id": asset.id,
            "node_id": github.node_id("ReleaseAsset", asset.id), "name": asset.name, "label": asset.label,
            "uploader": self.user(asset.uploader), "content_type": asset.content_type, "state": "uploaded",
            "size": size, "digest": digest, "download_count": 0, "created_at": rfc3339(asset.created),
            "updated_at": rfc3339(asset.updated), "browser_download_url": self.download_url(ctx, asset),
        }

    def download_url(self, ctx, asset):
        return f"{ctx.html}/releases/download/{quote(asset.release.tag)}/{quote(asset.name)}"

    def release(self, model, release):
        ctx = model.context
        url = f"{ctx.api}/releases/{release.id}"
        return {
            "url": url, "assets_url": url + "/assets",
            "upload_url": self.forge.url(f"/github/api/uploads/repos/{ctx.repo.full_name}/releases/{release.id}"
                                         "/assets{?name,label}"),
            "html_url": f"{ctx.html}/releases/tag/{quote(release.tag)}", "id": release.id,
            "author": self.user(release.author), "node_id": github.node_id("Release", release.id),
            "tag_name": release.tag, "target_commitish": release.target, "name": release.name,
            "draft": release.draft, "immutable": False, "prerelease": release.prerelease,
            "created_at": rfc3339(release.created), "published_at": time_field(release.published),
            "updated_at": rfc3339(release_updated(release)),
            "assets": [self.asset(model, a) for a in release.assets],
            "tarball_url": f"{ctx.api}/tarball/{quote(release.tag)}",
            "zipball_url": f"{ctx.api}/zipball/{quote(release.tag)}", "body": release.body,
        }

    def collaborator(self, login, level):
        body = dict(self.user(login))
        body["permissions"] = permissions_object(level)
        body["role_name"] = github_data.ROLE_NAMES[level]
        return body

    def team(self, ctx, entry):
        slug = entry["slug"]
        level = github_data.LEVELS.get(entry.get("permission", "pull"), "pull")
        org_id = self.user(ctx.owner)["id"]
        team_id = entry.get("id") or github_data.stable_id("github", "team", ctx.owner, slug)
        url = self.forge.api(f"/organizations/{org_id}/team/{team_id}")
        return {
            "id": team_id, "node_id": github.node_id("Team", team_id), "url": url,
            "html_url": self.forge.url(f"/github/orgs/{ctx.owner}/teams/{slug}"), "name": entry.get("name", slug),
            "slug": slug, "description": entry.get("description"), "privacy": entry.get("privacy", "closed"),
            "notification_setting": "notifications_enabled", "permission": level,
            "permissions": permissions_object(level), "members_url": url + "/members{/member}",
            "repositories_url": url + "/repos", "parent": None, "type": "organization", "organization_id": org_id,
        }

    def protection(self, ctx, branch, spec):
        url = f"{ctx.api}/branches/{quote(branch)}/protection"

        def enabled(name):
            return {"enabled": bool(spec.get(name, False))}

        body = {"url": url}
        checks = spec.get("required_status_checks")
        if checks is not None:
            contexts = list(checks.get("contexts", []))
            body["required_status_checks"] = {
                "url": url + "/required_status_checks", "strict": bool(checks.get("strict", False)),
                "contexts": contexts, "contexts_url": url + "/required_status_checks/contexts",
                "checks": [{"context": c, "app_id": None} for c in contexts],
            }
        reviews = spec.get("required_pull_request_reviews")
        if reviews is not None:
            body["required_pull_request_reviews"] = {
                "url": url + "/required_pull_request_reviews",
                "dismiss_stale_reviews": bool(reviews.get("dismiss_stale_reviews", False)),
                "require_code_owner_reviews": bool(reviews.get("require_code_owner_reviews", False)),
                "required_approving_review_count": int(reviews.get("required_approving_review_count", 1)),
                "require_last_push_approval": bool(reviews.get("require_last_push_approval", False)),
            }
        restrictions = spec.get("restrictions")
        if restrictions is not None:
            body["restrictions"] = {
                "url": url + "/restrictions", "users_url": url + "/restrictions/users",
                "teams_url": url + "/restrictions/teams", "apps_url": url + "/restrictions/apps",
                "users": [self.user(login) for login in restrictions.get("users", [])],
                "teams": [self.team(ctx, {"slug": slug}) for slug in restrictions.get("teams", [])], "apps": [],
            }
        body["required_signatures"] = {"url": url + "/required_signatures",
                                       "enabled": bool(spec.get("required_signatures", False))}
        body["enforce_admins"] = {"url": url + "/enforce_admins", "enabled": bool(spec.get("enforce_admins", False))}
        for name in ("required_linear_history", "allow_force_pushes", "allow_deletions", "block_creations",
                     "required_conversation_resolution", "lock_branch", "allow_fork_syncing"):
            body[name] = enabled(name)
        return body

    # Answers.

    def listing(self, req, items, fragment, updated, newest=None):
        """One page of `items` as a JSON array of `fragment(item)` texts, with `Link` as the
        repository listings write it and `Last-Modified` the newest `updated(item)` of the whole
        list (every page changes when any item does, since items move between pages); `newest`
        when the caller knows it."""
        per_page = min(req.int_arg("per_page", 30), 100)
        page = req.int_arg("page", 1)
        chosen, last = page_slice(items, page, per_page)
        body = ("[" + ",".join(fragment(item) for item in chosen) + "]").encode()
        headers = []
        if len(items) > per_page:
            headers.append(("Link", github.link_header(self.forge.app.base_url, req.path, req.query, page, last)))
        if items:
            headers.append(("Last-Modified", http_date(newest or max(updated(item) for item in items))))
        return Response(200, body, headers)

    def one(self, body, updated):
        return json_response(200, body, [("Last-Modified", http_date(updated))])

    def invalid(self, resource, field):
        return json_response(422, {"message": "Validation Failed",
                                   "errors": [{"resource": resource, "field": field, "code": "invalid"}],
                                   "documentation_url": DOCS, "status": "422"})

    def since(self, req):
        """(since or None, error answer or None)."""
        value = req.arg("since")
        if value is None:
            return None, None
        parsed = parse_since(value)
        return (parsed, None) if parsed is not None else (None, self.invalid("Issue", "since"))

    def handle(self, req, repo, rest):
        """Answer `GET /repos/{owner}/{repo}/{rest…}` for a repository the caller may see, or None
        when `rest` is not a metadata route."""
        model = self.model(repo)
        identity = req.identity
        match rest:
            case ["issues"]:
                return self.list_issues(req, model)
            case ["issues", "comments"]:
                return self.list_comments(req, model, model.comments, sortable=True)
            case ["issues", "comments", cid] if number_arg(cid) in model.comments_by_id:
                comment = model.comments_by_id[number_arg(cid)]
                return self.one(self.comment(model, comment), comment.updated)
            case ["issues", number] if number_arg(number) in model.issues:
                issue = model.issues[number_arg(number)]
                return self.one(self.issue(model, issue), issue.updated)
            case ["issues", number, "comments"] if number_arg(number) in model.issues:
                return self.list_comments(req, model, model.issues[number_arg(number)].comments, sortable=False)
            case ["pulls"]:
                return self.list_pulls(req, model, repo)
            case ["pulls", "comments"]:
                return self.list_review_comments(req, model, model.review_comments)
            case ["pulls", "comments", cid] if number_arg(cid) in model.review_comments_by_id:
                comment = model.review_comments_by_id[number_arg(cid)]
                return self.one(self.review_comment(model, comment), comment.updated)
            case ["pulls", number, *more] if self.pull_of(model, number) is not None:
                return self.pull_routes(req, model, repo, self.pull_of(model, number), more)
            case ["labels"]:
                labels = list(model.labels)
                return self.listing(req, labels, lambda name: self.cached(model, ("label", name),
                                                                          lambda: self.label(model, name)),
                                    lambda _name: repo.created)
            case ["labels", name] if name in model.labels:
                return json_response(200, self.label(model, name))
            case ["milestones"]:
                return self.list_milestones(req, model)
            case ["milestones", number] if number_arg(number) in model.milestones:
                milestone = model.milestones[number_arg(number)]
                return self.one(self.milestone(model, milestone.number), milestone.updated)
            case ["releases", *more]:
                return self.release_routes(req, model, repo, more)
            case ["topics"]:
                return json_response(200, {"names": repo.topics})
            case ["collaborators"]:
                return self.list_collaborators(req, model, repo, identity)
            case ["teams"]:
                ctx = model.context
                teams = repo.raw.get("teams", []) if ctx.org else []
                return self.listing(req, teams, lambda t: dumps(self.team(ctx, t)), lambda _t: repo.created)
            case ["branches", *branch, "protection"] if branch:
                return self.branch_protection(model, repo, identity, "/".join(branch))
        return None

    def pull_of(self, model, number):
        issue = model.issues.get(number_arg(number))
        return issue if issue is not None and issue.pull is not None else None

    def list_issues(self, req, model):
        since, error = self.since(req)
        if error:
            return error
        state = req.arg("state", "open")
        items = model.issues.values()
        if state in ("open", "closed"):
            items = [i for i in items if i.state == state]
        if since is not None:
            items = [i for i in items if i.updated >= since]
        items = filter_issues(req, items)
        sort = req.arg("sort", "created")
        keys = {"created": lambda i: (i.created, i.number), "updated": lambda i: (i.updated, i.number),
                "comments": lambda i: (len(i.comments), i.number)}
        items = sorted(items, key=keys.get(sort, keys["created"]), reverse=req.arg("direction", "desc") != "asc")
        return self.listing(req, items, lambda i: self.cached(model, ("issue", i.number), lambda: self.issue(model, i)),
                            lambda i: i.updated)

    def list_comments(self, req, model, comments, sortable):
        since, error = self.since(req)
        if error:
            return error
        items = [c for c in comments if c.updated >= since] if since is not None else comments
        sort = req.arg("sort") if sortable else None
        if sort == "updated":
            items = sorted(items, key=lambda c: (c.updated, c.id))
        if sort is not None and req.arg("direction", "asc") == "desc":
            items = items[::-1]
        return self.listing(req, items, lambda c: self.cached(model, ("comment", c.id), lambda: self.comment(model, c)),
                            lambda c: c.updated, newest_of(model, comments))

    def list_review_comments(self, req, model, comments):
        since, error = self.since(req)
        if error:
            return error
        items = [c for c in comments if c.updated >= since] if since is not None else comments
        sort = req.arg("sort")
        if sort == "updated":
            items = sorted(items, key=lambda c: (c.updated, c.id))
        if sort is not None and req.arg("direction", "asc") == "desc":
            items = items[::-1]
        return self.listing(req, items, lambda c: self.cached(model, ("review-comment", c.id),
                                                              lambda: self.review_comment(model, c)),
                            lambda c: c.updated, newest_of(model, comments))

    def list_pulls(self, req, model, repo):
        # GitHub's pulls listing has no `since`; a client that sends one gets everything.
        state = req.arg("state", "open")
        items = [i for i in model.issues.values() if i.pull is not None]
        if state in ("open", "closed"):
            items = [i for i in items if i.state == state]
        head, base = req.arg("head"), req.arg("base")
        if head:
            items = [i for i in items if head in (i.pull.head, f"{model.context.owner}:{i.pull.head}")]
        if base:
            items = [i for i in items if i.pull.base == base]
        sort = req.arg("sort", "created")
        keys = {"created": lambda i: (i.created, i.number), "updated": lambda i: (i.updated, i.number),
                "popularity": lambda i: (len(i.comments) + len(i.pull.review_comments), i.number),
                "long-running": lambda i: (-i.created.timestamp(), i.number)}
        default = "desc" if sort == "created" else "asc"
        items = sorted(items, key=keys.get(sort, keys["created"]), reverse=req.arg("direction", default) == "desc")
        repo_body = self.forge.repo_shape(repo, "repository", req.identity)
        return self.listing(req, items, lambda i: dumps(self.pull(model, i, repo_body, full=False)),
                            lambda i: i.updated)

    def pull_routes(self, req, model, repo, issue, more):
        pull = issue.pull
        match more:
            case []:
                body = self.pull(model, issue, self.forge.repo_shape(repo, "repository", req.identity), full=True)
                return self.one(body, issue.updated)
            case ["reviews"]:
                me = req.identity.login.lower() if req.identity else None
                # A pending review is visible to its author only.
                reviews = [r for r in pull.reviews if r.state != "PENDING" or r.user.lower() == me]
                return self.listing(req, reviews, lambda r: dumps(self.review(model, r)), lambda r: r.submitted)
            case ["reviews", rid] if any(r.id == number_arg(rid) for r in pull.reviews):
                review = next(r for r in pull.reviews if r.id == number_arg(rid))
                return self.one(self.review(model, review), review.submitted)
            case ["comments"]:
                return self.list_review_comments(req, model, pull.review_comments)
        return None

    def list_milestones(self, req, model):
        state = req.arg("state", "open")
        items = list(model.milestones.values())
        if state in ("open", "closed"):
            items = [m for m in items if m.state == state]
        far = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
        if req.arg("sort", "due_on") == "completeness":
            items.sort(key=lambda m: (m.closed_issues / max(1, m.open_issues + m.closed_issues), m.number))
        else:
            items.sort(key=lambda m: (m.due_on or far, m.number))
        if req.arg("direction", "asc") == "desc":
            items.reverse()
        return self.listing(req, items, lambda m: self.cached(model, ("milestone", m.number),
                                                              lambda: self.milestone(model, m.number)),
                            lambda m: m.updated)

    def release_routes(self, req, model, repo, more):
        # Drafts are shown to those who may push, as on GitHub.
        drafts = may_push(repo, req.identity)
        releases = sorted((r for r in model.releases if drafts or not r.draft), key=lambda r: (r.created, r.id),
                          reverse=True)
        by_id = {r.id: r for r in releases}
        match more:
            case []:
                return self.listing(req, releases, lambda r: dumps(self.release(model, r)), release_updated)
            case ["latest"]:
                published = [r for r in releases if not r.draft and not r.prerelease]
                if not published:
                    return None
                return self.one(self.release(model, published[0]), release_updated(published[0]))
            case ["tags", tag]:
                found = next((r for r in releases if r.tag == tag and not r.draft), None)
                return self.one(self.release(model, found), release_updated(found)) if found else None
            case [rid] if number_arg(rid) in by_id:
                release = by_id[number_arg(rid)]
                return self.one(self.release(model, release), release_updated(release))
            case [rid, "assets"] if number_arg(rid) in by_id:
                release = by_id[number_arg(rid)]
                return self.listing(req, release.assets, lambda a: dumps(self.asset(model, a)), lambda a: a.updated)
            case ["assets", aid] if number_arg(aid) in model.assets:
                asset = model.assets[number_arg(aid)]
                if asset.release.id not in by_id:
                    return None
                if "application/octet-stream" in (req.headers.get("Accept") or ""):
                    # GitHub redirects to a short-lived signed URL on its storage host; here the
                    # browser_download_url with a signature that stands in for the token.
                    location = f"{self.download_url(model.context, asset)}?sig={signature(repo, asset)}"
                    return Response(302, b"", [("Location", location)], content_type=None)
                return self.one(self.asset(model, asset), asset.updated)
        return None

    def list_collaborators(self, req, model, repo, identity):
        if identity is None:
            return self.forge.error(401, "Requires authentication", DOCS + "/collaborators/collaborators")
        level = permission(repo, identity)
        if level is not None and not github_data.level_at_least(level, "push"):
            return self.forge.error(403, "Must have push access to view repository collaborators.",
                                    DOCS + "/collaborators/collaborators#list-repository-collaborators")
        ctx = model.context
        affiliation = req.arg("affiliation", "all")
        direct = [(login, github_data.LEVELS.get(level, "push")) for login, level in collaborators(repo)]
        if affiliation == "outside":
            people = [(login, lvl) for login, lvl in direct if login.lower() not in ctx.members]
        elif affiliation == "direct":
            people = direct
        else:
            _, entry = self.forge.account(ctx.owner)
            member_level = github_data.LEVELS.get((entry or {}).get("members_permission", "read"), "pull")
            people = [] if ctx.org else [(ctx.owner, "admin")]
            people += [(login, member_level) for login in (entry or {}).get("members", [])] if ctx.org else []
            people += direct
        merged = {}
        for login, lvl in people:
            merged[login.lower()] = (login, lvl)  # a direct grant overrides the organisation's
        wanted = req.arg("permission")
        items = [(login, lvl) for login, lvl in merged.values() if wanted is None or lvl == wanted]
        return self.listing(req, items, lambda p: dumps(self.collaborator(*p)), lambda _p: repo.created)

    def branch_protection(self, model, repo, identity, branch):
        if identity is None:
            return self.forge.error(401, "Requires authentication", DOCS + "/branches/branch-protection")
        level = permission(repo, identity)
        if level is not None and level != "admin":
            return self.forge.error(403, "Must have admin rights to Repository.",
                                    DOCS + "/branches/branch-protection#get-branch-protection")
        spec = repo.raw.get("protection", {}).get(branch)
        if spec is not None:
            return json_response(200, self.protection(model.context, branch, spec))
        # Branches the fake knows of: the default one, those on disk, those pull requests name.
        named = {name for i in model.issues.values() if i.pull is not None for name in (i.pull.head, i.pull.base)}
        exists = (branch == repo.default_branch or branch in named
                  or github_data.branch_sha(repo.git_path(self.forge.app.root), branch))
        return self.forge.error(404, "Branch not protected" if exists else "Branch not found",
                                DOCS + "/branches/branch-protection#get-branch-protection")

    # Release downloads (not API: `/github/{owner}/{repo}/releases/download/{tag}/{name}`).

    def download(self, req, identity, segments):
        owner, name, _releases, _download, tag, filename = segments
        repo = self.forge.find_repo(owner, name)
        if repo is None:
            return None
        model = self.model(repo)
        asset = next((a for a in model.assets.values() if a.release.tag == tag and a.name == filename), None)
        if asset is None:
            return None
        # A signed URL (what the API's redirect gives) works for anybody, as GitHub's storage
        # URLs do; without a signature the caller must be able to see the repository.
        if req.arg("sig") != signature(repo, asset):
            if identity is INVALID or not can_see(identity, repo):
                return None
            if asset.release.draft and not may_push(repo, identity):
                return None
        return Response(200, asset.data(), [("Content-Disposition", f"attachment; filename={asset.name}")],
                        content_type="application/octet-stream")


def newest_of(model, comments):
    """The newest `updated` of a collection of comments, remembered per model. `since` keeps the
    newest item, so a `since`-filtered list has the same newest item (or none)."""
    key = ("newest", id(comments))
    found = model.cache.get(key)
    if found is None and comments:
        found = model.cache[key] = max(c.updated for c in comments)
    return found


def signature(repo, asset):
    return hashlib.sha256(f"fakeforge-asset:{repo.key}:{asset.id}".encode()).hexdigest()[:40]


def release_updated(release):
    return max([release.published or release.created] + [a.updated for a in release.assets])


def filter_issues(req, items):
    labels = [name for name in (req.arg("labels") or "").split(",") if name]
    if labels:
        items = [i for i in items if all(name in i.labels for name in labels)]
    milestone = req.arg("milestone")
    if milestone == "*":
        items = [i for i in items if i.milestone is not None]
    elif milestone == "none":
        items = [i for i in items if i.milestone is None]
    elif milestone is not None and milestone.isdigit():
        items = [i for i in items if i.milestone == int(milestone)]
    assignee = req.arg("assignee")
    if assignee == "*":
        items = [i for i in items if i.assignees]
    elif assignee == "none":
        items = [i for i in items if not i.assignees]
    elif assignee is not None:
        items = [i for i in items if assignee.lower() in (a.lower() for a in i.assignees)]
    creator = req.arg("creator")
    if creator is not None:
        items = [i for i in items if i.user.lower() == creator.lower()]
    return items
