"""Gitea/Forgejo's repository metadata endpoints — issues, pull requests, reviews and their
comments, conversation comments, labels, milestones, releases and their attachments,
collaborators, branch protections — in the shapes of forgejo-swagger.v1.json (`Issue`, `Comment`,
`PullRequest`, `PRBranchInfo`, `PullReview`, `PullReviewComment`, `Label`, `Milestone`,
`Release`, `Attachment`, `User`, `BranchProtection`).

The world is the GitHub metadata world's (see README.md): `github_data` builds the same model
from a repository entry of the `gitea` section, and this module only shapes it the way Gitea
does. What differs from GitHub is said where it happens: milestones have no number of their own
(issues name them by the world's number, answers by id), comments say whether they belong to an
issue or a pull request by which of `issue_url` / `pull_request_url` is set, review comments are
listed per review, release attachments are downloaded from their `browser_download_url`.
"""

import datetime
import json
import threading

import gitea
import github_data
from core import INVALID, Response, can_see, json_response, page_slice, quote, rfc3339, stable_uuid

DEFAULT_LIMIT = 30
MAX_LIMIT = 50

# The world's review states are GitHub's; Gitea names two of them differently and keeps a
# dismissed review's verdict, flagging it `dismissed`.
REVIEW_STATES = {"COMMENTED": "COMMENT", "CHANGES_REQUESTED": "REQUEST_CHANGES", "DISMISSED": "APPROVED"}


def dumps(value):
    return json.dumps(value, separators=(",", ":"))


def time_field(value):
    return rfc3339(value) if value is not None else None


def parse_time(value):
    """An RFC 3339 time (`Z` or an offset; a bare date means midnight UTC), or None."""
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def number_arg(text):
    return int(text) if text.isdigit() else None


def permission(repo, identity):
    """The level ("pull" … "admin") the world gives `identity`: admin for the owner, a
    collaborator's level, else None (the world says nothing: every right, as on GitHub)."""
    if identity is None:
        return None
    if identity.login.lower() == repo.owner.lower():
        return "admin"
    for login, level in collaborators(repo):
        if login.lower() == identity.login.lower():
            return github_data.LEVELS.get(level, "push")
    return None


def may(repo, identity, wanted):
    if identity is None:
        return False
    level = permission(repo, identity)
    return level is None or github_data.level_at_least(level, wanted)


def collaborators(repo):
    out = []
    for entry in repo.raw.get("collaborators", []):
        if isinstance(entry, str):
            out.append((entry, "push"))
        else:
            out.append((entry["login"], entry.get("permission", "push")))
    return out


class Context:
    def __init__(self, forge, repo):
        self.repo = repo
        self.api = forge.url(f"{forge.api_base}/repos/{repo.full_name}")
        self.html = forge.url(f"/gitea/{repo.full_name}")


class Metadata:
    """The metadata endpoints of the Gitea forge module; `handle` answers `repos/{o}/{r}/…`."""

    def __init__(self, forge):
        self.forge = forge
        self.lock = threading.Lock()
        self.generation = None
        self.models = {}
        self.users = {}

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
                owner, _ = self.forge.find_account(repo.owner)
                found = github_data.build(self.forge.app.root, repo, owner or repo.owner)
                found.context = Context(self.forge, repo)
                found.raw = repo.raw
                self.models[repo.key] = found
            return found

    def user(self, login):
        found = self.users.get(login)
        if found is None:
            name, is_org = self.forge.find_account(login)
            found = self.users[login] = self.forge.user_shape(name or login, bool(is_org))
        return found

    def cached(self, model, key, make):
        text = model.cache.get(key)
        if text is None:
            text = model.cache[key] = dumps(make())
        return text

    # Shapes.

    def label(self, model, name):
        label = model.labels[name]
        return {"id": label.id, "name": label.name, "exclusive": False, "is_archived": False,
                "color": label.color.lstrip("#"), "description": label.description or "",
                "url": f"{model.context.api}/labels/{label.id}"}

    def milestone(self, model, number):
        m = model.milestones.get(number)
        if m is None:
            return None
        return {"id": m.id, "title": m.title, "description": m.description or "", "state": m.state,
                "open_issues": m.open_issues, "closed_issues": m.closed_issues, "created_at": rfc3339(m.created),
                "updated_at": rfc3339(m.updated), "closed_at": time_field(m.closed), "due_on": time_field(m.due_on)}

    def html_of(self, model, issue):
        return f"{model.context.html}/{'pulls' if issue.pull else 'issues'}/{issue.number}"

    def issue(self, model, issue):
        ctx = model.context
        repo = ctx.repo
        assignees = [self.user(login) for login in issue.assignees]
        pull = None
        if issue.pull is not None:
            pull = {"merged": issue.pull.merged is not None, "merged_at": time_field(issue.pull.merged),
                    "draft": issue.pull.draft, "html_url": self.html_of(model, issue)}
        return {
            "id": issue.id, "url": f"{ctx.api}/issues/{issue.number}", "html_url": self.html_of(model, issue),
            "number": issue.number, "user": self.user(issue.user), "original_author": "", "original_author_id": 0,
            "title": issue.title, "body": issue.body or "", "ref": "", "assets": [],
            "labels": [self.label(model, name) for name in issue.labels],
            "milestone": self.milestone(model, issue.milestone), "assignee": assignees[0] if assignees else None,
            "assignees": assignees, "state": issue.state, "is_locked": issue.locked, "comments": len(issue.comments),
            "created_at": rfc3339(issue.created), "updated_at": rfc3339(issue.updated),
            "closed_at": time_field(issue.closed), "due_date": None, "pull_request": pull,
            "repository": {"id": repo.id, "name": repo.name, "owner": repo.owner, "full_name": repo.full_name},
            "pin_order": 0,
        }

    def comment(self, model, comment):
        issue = model.issues[comment.number]
        html = self.html_of(model, issue)
        return {
            "id": comment.id, "html_url": f"{html}#issuecomment-{comment.id}",
            "pull_request_url": html if issue.pull else "", "issue_url": "" if issue.pull else html,
            "user": self.user(comment.user), "original_author": "", "original_author_id": 0, "body": comment.body,
            "assets": [], "created_at": rfc3339(comment.created), "updated_at": rfc3339(comment.updated),
        }

    def branch(self, ref, sha, repo_body):
        return {"label": ref, "ref": ref, "sha": sha, "repo_id": repo_body["id"], "repo": repo_body}

    def pull(self, model, issue, repo_body):
        pull, html = issue.pull, self.html_of(model, issue)
        assignees = [self.user(login) for login in issue.assignees]
        merged = pull.merged is not None
        return {
            "id": pull.id, "url": html, "number": issue.number, "user": self.user(issue.user), "title": issue.title,
            "body": issue.body or "", "labels": [self.label(model, name) for name in issue.labels],
            "milestone": self.milestone(model, issue.milestone), "assignee": assignees[0] if assignees else None,
            "assignees": assignees, "requested_reviewers": [self.user(login) for login in pull.requested_reviewers],
            "requested_reviewers_teams": [], "state": issue.state, "draft": pull.draft, "is_locked": issue.locked,
            "comments": len(issue.comments), "review_comments": len(pull.review_comments), "additions": 0,
            "deletions": 0, "changed_files": 0, "html_url": html, "diff_url": html + ".diff",
            "patch_url": html + ".patch", "mergeable": issue.state == "open", "merged": merged,
            "merged_at": time_field(pull.merged), "merge_commit_sha": pull.merge_commit_sha,
            "merged_by": self.user(pull.merged_by) if merged and pull.merged_by else None,
            "allow_maintainer_edit": False, "base": self.branch(pull.base, pull.base_sha, repo_body),
            "head": self.branch(pull.head, pull.head_sha, repo_body), "merge_base": pull.base_sha,
            "due_date": None, "created_at": rfc3339(issue.created), "updated_at": rfc3339(issue.updated),
            "closed_at": time_field(issue.closed), "pin_order": 0, "flow": 0,
        }

    def review(self, model, issue, review):
        html = self.html_of(model, issue)
        count = sum(1 for c in issue.pull.review_comments if c.review_id == review.id)
        body = {
            "id": review.id, "user": self.user(review.user), "team": None,
            "state": REVIEW_STATES.get(review.state, review.state), "body": review.body,
            "commit_id": review.commit_id, "stale": False, "official": review.state in ("APPROVED",
                                                                                      "CHANGES_REQUESTED"),
            "dismissed": review.state == "DISMISSED", "comments_count": count,
            "submitted_at": rfc3339(review.submitted), "updated_at": rfc3339(review.submitted),
            "html_url": f"{html}#issuecomment-{review.id}", "pull_request_url": html,
        }
        return body

    def review_comment(self, model, issue, c):
        html = self.html_of(model, issue)
        return {
            "id": c.id, "body": c.body, "user": self.user(c.user), "resolver": None,
            "pull_request_review_id": c.review_id, "created_at": rfc3339(c.created),
            "updated_at": rfc3339(c.updated), "path": c.path, "commit_id": c.commit_id,
            "original_commit_id": c.original_commit_id, "diff_hunk": c.diff_hunk, "position": c.position or 0,
            "original_position": c.original_position or 0, "html_url": f"{html}#issuecomment-{c.id}",
            "pull_request_url": html,
        }

    def download_url(self, model, asset):
        return f"{model.context.html}/releases/download/{quote(asset.release.tag)}/{quote(asset.name)}"

    def attachment(self, model, asset):
        size, _digest = asset.stat()
        return {"id": asset.id, "name": asset.name, "size": size, "download_count": 0,
                "created_at": rfc3339(asset.created),
                "uuid": stable_uuid("gitea", "attachment", model.context.repo.full_name, str(asset.id)),
                "browser_download_url": self.download_url(model, asset), "type": "attachment"}

    def release(self, model, release):
        ctx = model.context
        url = f"{ctx.api}/releases/{release.id}"
        tag = quote(release.tag)
        return {
            "id": release.id, "tag_name": release.tag, "target_commitish": release.target, "name": release.name,
            "body": release.body or "", "url": url, "html_url": f"{ctx.html}/releases/tag/{tag}",
            "tarball_url": f"{ctx.html}/archive/{tag}.tar.gz", "zipball_url": f"{ctx.html}/archive/{tag}.zip",
            "upload_url": url + "/assets", "hide_archive_links": False, "draft": release.draft,
            "prerelease": release.prerelease, "created_at": rfc3339(release.created),
            "published_at": time_field(release.published), "author": self.user(release.author),
            "assets": [self.attachment(model, a) for a in release.assets],
            "archive_download_count": {"tar_gz": 0, "zip": 0},
        }

    def protection(self, repo, spec):
        at = rfc3339(repo.created)
        body = {
            "branch_name": "", "rule_name": spec["rule_name"], "enable_push": False, "enable_push_whitelist": False,
            "push_whitelist_usernames": [], "push_whitelist_teams": [], "push_whitelist_deploy_keys": False,
            "enable_merge_whitelist": False, "merge_whitelist_usernames": [], "merge_whitelist_teams": [],
            "enable_status_check": False, "status_check_contexts": [], "required_approvals": 0,
            "enable_approvals_whitelist": False, "approvals_whitelist_username": [],
            "approvals_whitelist_teams": [], "block_on_rejected_reviews": False,
            "block_on_official_review_requests": False, "block_on_outdated_branch": False,
            "dismiss_stale_approvals": False, "ignore_stale_approvals": False, "require_signed_commits": False,
            "protected_file_patterns": "", "unprotected_file_patterns": "", "apply_to_admins": False,
            "created_at": at, "updated_at": at,
        }
        body.update({k: v for k, v in spec.items() if k in body})
        return body

    # Answers.

    def listing(self, req, items, fragment):
        """One page of `items` (`limit` default 30, at most 50 or the world's `gitea.max_response_items`,
        as a server's `MAX_RESPONSE_ITEMS`; `page`) with `X-Total-Count` and `Link` as Gitea's
        repository listings write them."""
        most = int(self.forge.section().get("max_response_items", MAX_LIMIT))
        limit = min(req.int_arg("limit", min(DEFAULT_LIMIT, most)), most)
        page = req.int_arg("page", 1)
        chosen, last = page_slice(items, page, limit)
        body = ("[" + ",".join(fragment(item) for item in chosen) + "]").encode()
        headers = [("X-Total-Count", str(len(items))), ("Access-Control-Expose-Headers", "X-Total-Count, Link")]
        link = gitea.link_header(self.forge.app.base_url, req.path, req.query, page, last)
        if link:
            headers.append(("Link", link))
        return Response(200, body, headers)

    def error(self, status, message):
        return json_response(status, {"message": message, "url": self.forge.swagger()})

    def window(self, req, items):
        """`since` / `before` (RFC 3339) on `updated`: (items kept, None) or (None, a 422)."""
        for name, keep in (("since", lambda i, t: i.updated >= t), ("before", lambda i, t: i.updated <= t)):
            value = req.arg(name)
            if value is None:
                continue
            at = parse_time(value)
            if at is None:
                return None, self.error(422, f"invalid {name}: {value}")
            items = [i for i in items if keep(i, at)]
        return items, None

    def handle(self, req, repo, rest):
        """Answer `GET /repos/{owner}/{repo}/{rest…}` for a repository the caller may see, or None
        when `rest` is not a metadata route (or names nothing)."""
        model = self.model(repo)
        match rest:
            case ["issues"]:
                return self.list_issues(req, model)
            case ["issues", "comments"]:
                items, error = self.window(req, model.comments)
                return error or self.listing(req, items, lambda c: self.cached(
                    model, ("comment", c.id), lambda: self.comment(model, c)))
            case ["issues", "comments", cid] if number_arg(cid) in model.comments_by_id:
                return json_response(200, self.comment(model, model.comments_by_id[number_arg(cid)]))
            case ["issues", number, "comments"] if number_arg(number) in model.issues:
                # Not paged, as Gitea answers it.
                items, error = self.window(req, [c for c in model.comments if c.number == number_arg(number)])
                return error or json_response(200, [self.comment(model, c) for c in items])
            case ["issues", number] if number_arg(number) in model.issues:
                return json_response(200, self.issue(model, model.issues[number_arg(number)]))
            case ["pulls"]:
                return self.list_pulls(req, model, repo)
            case ["pulls", number, *more] if self.pull_of(model, number) is not None:
                return self.pull_routes(req, model, repo, self.pull_of(model, number), more)
            case ["labels"]:
                return self.list_labels(req, model)
            case ["labels", lid] if any(label.id == number_arg(lid) for label in model.labels.values()):
                name = next(n for n, label in model.labels.items() if label.id == number_arg(lid))
                return json_response(200, self.label(model, name))
            case ["milestones"]:
                return self.list_milestones(req, model)
            case ["milestones", mid] if any(m.id == number_arg(mid) for m in model.milestones.values()):
                found = next(m for m in model.milestones.values() if m.id == number_arg(mid))
                return json_response(200, self.milestone(model, found.number))
            case ["releases", *more]:
                return self.release_routes(req, model, repo, more)
            case ["collaborators"]:
                people = [login for login, _level in collaborators(repo)]
                return self.listing(req, people, lambda login: dumps(self.user(login)))
            case ["branch_protections"]:
                if not may(repo, req.identity, "admin"):
                    return self.error(403, "user should be an owner or a collaborator with admin write of a "
                                           "repository")
                rules = repo.raw.get("branch_protections", [])
                return json_response(200, [self.protection(repo, spec) for spec in rules])
        return None

    def pull_of(self, model, number):
        issue = model.issues.get(number_arg(number))
        return issue if issue is not None and issue.pull is not None else None

    def list_issues(self, req, model):
        items = list(model.issues.values())
        state = req.arg("state", "open")
        if state in ("open", "closed"):
            items = [i for i in items if i.state == state]
        kind = req.arg("type")
        if kind == "issues":
            items = [i for i in items if i.pull is None]
        elif kind == "pulls":
            items = [i for i in items if i.pull is not None]
        items, error = self.window(req, items)
        if error:
            return error
        items = sort_issues(items, req.arg("sort"))
        return self.listing(req, items, lambda i: self.cached(model, ("issue", i.number),
                                                             lambda: self.issue(model, i)))

    def list_pulls(self, req, model, repo):
        items = [i for i in model.issues.values() if i.pull is not None]
        state = req.arg("state", "open")
        if state in ("open", "closed"):
            items = [i for i in items if i.state == state]
        items = sort_issues(items, req.arg("sort"))
        repo_body = self.forge.repo_shape(repo, req.identity, with_parent=False)
        return self.listing(req, items, lambda i: dumps(self.pull(model, i, repo_body)))

    def pull_routes(self, req, model, repo, issue, more):
        pull = issue.pull
        me = req.identity.login.lower() if req.identity else None
        # A pending review is visible to its author only.
        reviews = [r for r in pull.reviews if r.state != "PENDING" or r.user.lower() == me]
        match more:
            case []:
                repo_body = self.forge.repo_shape(repo, req.identity, with_parent=False)
                return json_response(200, self.pull(model, issue, repo_body))
            case ["reviews"]:
                return self.listing(req, reviews, lambda r: dumps(self.review(model, issue, r)))
            case ["reviews", rid] if any(r.id == number_arg(rid) for r in reviews):
                review = next(r for r in reviews if r.id == number_arg(rid))
                return json_response(200, self.review(model, issue, review))
            case ["reviews", rid, "comments"] if any(r.id == number_arg(rid) for r in reviews):
                comments = [c for c in pull.review_comments if c.review_id == number_arg(rid)]
                return json_response(200, [self.review_comment(model, issue, c) for c in comments])
        return None

    def list_labels(self, req, model):
        labels = sorted(model.labels.values(), key=lambda label: (label.name, label.id))
        if req.arg("sort") == "reversealphabetically":
            labels.reverse()
        return self.listing(req, labels, lambda label: dumps(self.label(model, label.name)))

    def list_milestones(self, req, model):
        items = list(model.milestones.values())
        state = req.arg("state", "open")
        if state in ("open", "closed"):
            items = [m for m in items if m.state == state]
        name = req.arg("name")
        if name:
            items = [m for m in items if name.lower() in m.title.lower()]
        # Gitea: by due date, none last, then by id.
        far = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
        items.sort(key=lambda m: (m.due_on or far, m.id))
        return self.listing(req, items, lambda m: dumps(self.milestone(model, m.number)))

    def release_routes(self, req, model, repo, more):
        # Drafts are shown to those who may write, as on Gitea.
        drafts = may(repo, req.identity, "push")
        releases = sorted((r for r in model.releases if drafts or not r.draft), key=lambda r: (r.created, r.id),
                          reverse=True)
        by_id = {r.id: r for r in releases}
        match more:
            case []:
                for name, attr in (("draft", "draft"), ("pre-release", "prerelease")):
                    wanted = req.arg(name)
                    if wanted in ("true", "false"):
                        releases = [r for r in releases if getattr(r, attr) == (wanted == "true")]
                return self.listing(req, releases, lambda r: dumps(self.release(model, r)))
            case [rid] if number_arg(rid) in by_id:
                return json_response(200, self.release(model, by_id[number_arg(rid)]))
            case [rid, "assets"] if number_arg(rid) in by_id:
                return json_response(200, [self.attachment(model, a) for a in by_id[number_arg(rid)].assets])
            case [rid, "assets", aid] if number_arg(rid) in by_id:
                found = next((a for a in by_id[number_arg(rid)].assets if a.id == number_arg(aid)), None)
                return json_response(200, self.attachment(model, found)) if found else None
        return None

    # Attachment downloads (not API: `/gitea/{owner}/{repo}/releases/download/{tag}/{name}`).

    def download(self, identity, segments):
        owner, name, _releases, _download, tag, filename = segments
        repo = self.forge.find_repo(owner, name)
        if repo is None or identity is INVALID or not can_see(identity, repo):
            return None
        model = self.model(repo)
        asset = next((a for a in model.assets.values() if a.release.tag == tag and a.name == filename), None)
        if asset is None or (asset.release.draft and not may(repo, identity, "push")):
            return None
        return Response(200, asset.data(), [("Content-Disposition", f'attachment; filename="{asset.name}"')],
                        content_type="application/octet-stream")


def sort_issues(items, sort):
    """Gitea's `sort` of issues and pull requests; without one, newest first."""
    keys = {"oldest": (lambda i: (i.created, i.number), False),
            "recentupdate": (lambda i: (i.updated, i.number), True),
            "leastupdate": (lambda i: (i.updated, i.number), False),
            "mostcomment": (lambda i: (len(i.comments), i.number), True),
            "leastcomment": (lambda i: (len(i.comments), i.number), False)}
    key, reverse = keys.get(sort, (lambda i: (i.created, i.number), True))
    return sorted(items, key=key, reverse=reverse)
