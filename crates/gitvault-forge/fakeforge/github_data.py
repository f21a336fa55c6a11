"""The metadata of one GitHub repository — issues, pull requests, comments, reviews, labels,
milestones, releases — as plain objects, built from its world.json entry and from its compact
`generate` description. No HTTP and no shapes here: `github_meta.py` turns these into answers.

A model is built once per world generation and repository (see `github_meta.Metadata.model`),
so that paging through thousands of generated issues costs a filter, a sort and a slice per
request, not a rebuild.
"""

import datetime
import hashlib
import os
import random

from core import parse_time, stable_id

HOUR = datetime.timedelta(hours=1)
MINUTE = datetime.timedelta(minutes=1)

# Every spelling of a repository permission, as the collaborator and team APIs take them, to the
# names `permissions` objects use.
LEVELS = {"read": "pull", "pull": "pull", "triage": "triage", "write": "push", "push": "push",
          "maintain": "maintain", "admin": "admin"}
ORDER = ["pull", "triage", "push", "maintain", "admin"]
ROLE_NAMES = {"pull": "read", "triage": "triage", "push": "write", "maintain": "maintain", "admin": "admin"}


def level_at_least(level, wanted):
    return ORDER.index(level) >= ORDER.index(wanted)


def fake_sha(*parts):
    return hashlib.sha1(":".join(str(p) for p in parts).encode()).hexdigest()


def time_or(value, default):
    return parse_time(value) if value else default


class Issue:
    """An issue, or the issue half of a pull request (`pull` is then set)."""

    __slots__ = ("number", "id", "title", "body", "state", "state_reason", "user", "labels", "assignees",
                 "milestone", "created", "updated", "closed", "closed_by", "locked", "lock_reason", "comments",
                 "pull")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class Pull:
    __slots__ = ("id", "head", "base", "head_sha", "base_sha", "merged", "merged_by", "merge_commit_sha", "draft",
                 "reviews", "review_comments", "requested_reviewers")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class Comment:
    __slots__ = ("id", "number", "user", "body", "created", "updated")

    def __init__(self, id, number, user, body, created, updated):  # noqa: A002 - GitHub's field name
        self.id, self.number, self.user, self.body, self.created, self.updated = (
            id, number, user, body, created, updated)


class Review:
    __slots__ = ("id", "number", "user", "state", "body", "submitted", "commit_id")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class ReviewComment:
    __slots__ = ("id", "number", "user", "body", "path", "position", "original_position", "line", "original_line",
                 "side", "start_line", "start_side", "diff_hunk", "commit_id", "original_commit_id",
                 "in_reply_to_id", "review_id", "created", "updated")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class Label:
    __slots__ = ("id", "name", "color", "description", "default")

    def __init__(self, id, name, color, description, default):  # noqa: A002
        self.id, self.name, self.color, self.description, self.default = id, name, color, description, default


class Milestone:
    __slots__ = ("id", "number", "title", "state", "description", "due_on", "created", "updated", "closed",
                 "creator", "open_issues", "closed_issues")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class Release:
    __slots__ = ("id", "tag", "name", "body", "draft", "prerelease", "target", "created", "published", "author",
                 "assets")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class Asset:
    """A release asset; its bytes come from `path` (a file under the fake's root) or `text`."""

    __slots__ = ("id", "release", "name", "label", "content_type", "path", "text", "created", "updated",
                 "uploader")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    def data(self):
        if self.path is not None:
            with open(self.path, "rb") as f:
                return f.read()
        return (self.text or "").encode()

    def stat(self):
        """(size, "sha256:…"); read for every answer that shows the asset, as the file may change
        between requests without the world changing."""
        data = self.data()
        return len(data), "sha256:" + hashlib.sha256(data).hexdigest()


class Model:
    """Everything the metadata endpoints serve for one repository."""

    def __init__(self):
        self.issues = {}             # number -> Issue (pull requests included)
        self.comments = []           # every issue comment, oldest first
        self.comments_by_id = {}
        self.review_comments = []    # every review comment, oldest first
        self.review_comments_by_id = {}
        self.labels = {}             # name -> Label, in world order
        self.milestones = {}         # number -> Milestone
        self.releases = []
        self.assets = {}             # id -> Asset
        self.cache = {}              # shaped JSON fragments, see github_meta


def build(root, repo, owner_login):
    """The model of `repo` (a core.Repo of the GitHub section) from its world entry."""
    raw = repo.raw
    model = Model()
    full = repo.full_name
    for entry in raw.get("labels", []):
        add_label(model, full, entry.get("name", ""), entry.get("color", "ededed"), entry.get("description"),
                  entry.get("default", False))
    for index, entry in enumerate(raw.get("milestones", [])):
        number = entry.get("number", index + 1)
        created = time_or(entry.get("created_at"), repo.created + index * HOUR)
        state = entry.get("state", "open")
        closed = time_or(entry.get("closed_at"), created if state == "closed" else None)
        model.milestones[number] = Milestone(
            id=entry.get("id") or stable_id("github", "milestone", full, str(number)), number=number,
            title=entry.get("title", f"Milestone {number}"), state=state, description=entry.get("description"),
            due_on=time_or(entry.get("due_on"), None), created=created,
            updated=time_or(entry.get("updated_at"), closed or created), closed=closed,
            creator=entry.get("creator", owner_login))

    # Issues and pull requests share one sequence of numbers; entries without one take the next
    # free number, issues first, in world order.
    entries = [(e, False) for e in raw.get("issues", [])] + [(e, True) for e in raw.get("pulls", [])]
    taken = {e["number"] for e, _ in entries if "number" in e}
    next_free = 1
    for entry, is_pull in entries:
        number = entry.get("number")
        if number is None:
            while next_free in taken:
                next_free += 1
            number = next_free
            taken.add(number)
        if number in model.issues:
            continue  # a duplicate number: the first entry wins
        model.issues[number] = issue_from_world(root, model, repo, owner_login, entry, number, is_pull)

    spec = raw.get("generate")
    if spec:
        generate(model, repo, owner_login, spec, max(model.issues, default=0))
    releases(root, repo, owner_login, model)
    finish(model)
    return model


def add_label(model, full, name, color="ededed", description=None, default=False):
    if name not in model.labels:
        model.labels[name] = Label(stable_id("github", "label", full, name), name, color, description, default)
    return name


def issue_from_world(root, model, repo, owner_login, entry, number, is_pull):
    full = repo.full_name
    created = time_or(entry.get("created_at"), repo.created + number * HOUR)
    merged = time_or(entry.get("merged_at"), None)
    state = entry.get("state", "closed" if merged else "open")
    closed = time_or(entry.get("closed_at"), merged if merged else None)
    updated = time_or(entry.get("updated_at"), None)
    if state == "closed" and closed is None:
        closed = updated or created
    user = entry.get("user", owner_login)
    issue = Issue(
        number=number, id=entry.get("id") or stable_id("github", "issue", full, str(number)),
        title=entry.get("title", f"Issue {number}"), body=entry.get("body"), state=state,
        state_reason=entry.get("state_reason", "completed" if state == "closed" and not is_pull else None),
        user=user, labels=[add_label(model, full, name) for name in entry.get("labels", [])],
        assignees=list(entry.get("assignees", [])), milestone=entry.get("milestone"), created=created,
        updated=updated or max(created, closed or created), closed=closed if state == "closed" else None,
        closed_by=entry.get("closed_by", user) if state == "closed" else None, locked=bool(entry.get("locked")),
        lock_reason=entry.get("active_lock_reason"), comments=[], pull=None)
    for index, c in enumerate(entry.get("comments", [])):
        at = time_or(c.get("created_at"), created + (index + 1) * MINUTE)
        comment = Comment(c.get("id") or stable_id("github", "issue-comment", full, str(number), str(index)), number,
                          c.get("user", user), c.get("body", ""), at, time_or(c.get("updated_at"), at))
        issue.comments.append(comment)
    if is_pull:
        head = entry.get("head", f"branch-{number}")
        base = entry.get("base", repo.default_branch)
        git_dir = repo.git_path(root)
        head_sha = entry.get("head_sha") or branch_sha(git_dir, head) or fake_sha(full, "head", head, number)
        pull = Pull(id=entry.get("pull_id") or stable_id("github", "pull", full, str(number)), head=head, base=base,
                    head_sha=head_sha,
                    base_sha=entry.get("base_sha") or branch_sha(git_dir, base) or fake_sha(full, "base", base),
                    merged=merged, merged_by=entry.get("merged_by", owner_login) if merged else None,
                    merge_commit_sha=entry.get("merge_commit_sha") or (fake_sha(full, "merge", number)
                                                                        if merged else None),
                    draft=bool(entry.get("draft", False)), reviews=[], review_comments=[],
                    requested_reviewers=list(entry.get("requested_reviewers", [])))
        for index, r in enumerate(entry.get("reviews", [])):
            pull.reviews.append(Review(
                id=r.get("id") or stable_id("github", "review", full, str(number), str(index)), number=number,
                user=r.get("user", owner_login), state=r.get("state", "COMMENTED"), body=r.get("body", ""),
                submitted=time_or(r.get("submitted_at"), created + (index + 1) * MINUTE),
                commit_id=r.get("commit_id", head_sha)))
        for index, c in enumerate(entry.get("review_comments", [])):
            at = time_or(c.get("created_at"), created + (index + 1) * MINUTE)
            commit = c.get("commit_id", head_sha)
            position = c.get("position", 1)
            line = c.get("line", position)
            pull.review_comments.append(ReviewComment(
                id=c.get("id") or stable_id("github", "review-comment", full, str(number), str(index)),
                number=number, user=c.get("user", owner_login), body=c.get("body", ""),
                path=c.get("path", "README.md"), position=position,
                original_position=c.get("original_position", position), line=line,
                original_line=c.get("original_line", line), side=c.get("side", "RIGHT"),
                start_line=c.get("start_line"), start_side=c.get("start_side"),
                diff_hunk=c.get("diff_hunk", "@@ -1,1 +1,1 @@\n-old\n+new"), commit_id=commit,
                original_commit_id=c.get("original_commit_id", commit), in_reply_to_id=c.get("in_reply_to_id"),
                review_id=c.get("pull_request_review_id"), created=at, updated=time_or(c.get("updated_at"), at)))
        issue.pull = pull
    return issue


def branch_sha(git_dir, branch):
    """The commit `branch` names in the bare repository `git_dir`, or None."""
    try:
        with open(os.path.join(git_dir, "refs", "heads", *branch.split("/")), encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        pass
    try:
        with open(os.path.join(git_dir, "packed-refs"), encoding="utf-8") as f:
            for line in f:
                sha, _, name = line.strip().partition(" ")
                if name == f"refs/heads/{branch}":
                    return sha
    except OSError:
        pass
    return None


def finish(model):
    """Derived values: comments and reviews oldest first, activity bumping `updated_at`, milestone
    counts."""
    for issue in model.issues.values():
        issue.comments.sort(key=lambda c: (c.created, c.id))
        if issue.pull is not None:
            issue.pull.reviews.sort(key=lambda r: (r.submitted, r.id))
            issue.pull.review_comments.sort(key=lambda c: (c.created, c.id))
        # A new comment, review or review comment is activity on the issue, as on GitHub; editing
        # one changes only its own updated_at.
        newest = [c.created for c in issue.comments]
        if issue.pull is not None:
            newest += [r.submitted for r in issue.pull.reviews] + [c.created for c in issue.pull.review_comments]
            model.review_comments.extend(issue.pull.review_comments)
        if newest:
            issue.updated = max(issue.updated, max(newest))
        model.comments.extend(issue.comments)
        if issue.milestone in model.milestones:
            milestone = model.milestones[issue.milestone]
            if issue.state == "open":
                milestone.open_issues = (milestone.open_issues or 0) + 1
            else:
                milestone.closed_issues = (milestone.closed_issues or 0) + 1
    model.comments.sort(key=lambda c: (c.created, c.id))
    model.review_comments.sort(key=lambda c: (c.created, c.id))
    model.comments_by_id = {c.id: c for c in model.comments}
    model.review_comments_by_id = {c.id: c for c in model.review_comments}
    for milestone in model.milestones.values():
        milestone.open_issues = milestone.open_issues or 0
        milestone.closed_issues = milestone.closed_issues or 0


def releases(root, repo, owner_login, model):
    full = repo.full_name
    for index, entry in enumerate(repo.raw.get("releases", [])):
        tag = entry.get("tag_name", f"v{index + 1}")
        release_id = entry.get("id") or stable_id("github", "release", full, tag)
        created = time_or(entry.get("created_at"), repo.created + index * HOUR)
        draft = bool(entry.get("draft", False))
        release = Release(
            id=release_id, tag=tag, name=entry.get("name", tag), body=entry.get("body"), draft=draft,
            prerelease=bool(entry.get("prerelease", False)), target=entry.get("target_commitish", repo.default_branch),
            created=created, published=None if draft else time_or(entry.get("published_at"), created),
            author=entry.get("author", owner_login), assets=[])
        for a in entry.get("assets", []):
            name = a.get("name", "asset")
            asset = Asset(
                id=a.get("id") or stable_id("github", "asset", full, str(release_id), name), release=release,
                name=name, label=a.get("label"), content_type=a.get("content_type", "application/octet-stream"),
                path=os.path.join(root, a["file"]) if "file" in a else None, text=a.get("text"),
                created=time_or(a.get("created_at"), created), updated=time_or(a.get("updated_at"), created),
                uploader=a.get("uploader", release.author))
            release.assets.append(asset)
            model.assets[asset.id] = asset
        model.releases.append(release)


# The generator: many deterministic items from a few numbers.

FILLER = [
    "Steps to reproduce are in the description above.",
    "This happens on every run since the last upgrade.",
    "Could we make this configurable?",
    "The documentation does not mention this case.",
    "Tested on Linux and macOS.",
]
REVIEW_STATES = ["APPROVED", "COMMENTED", "CHANGES_REQUESTED"]


def generate(model, repo, owner_login, spec, offset):
    """Add `spec["issues"]` issues and `spec["pulls"]` pull requests numbered after `offset`, with
    `comments`, `reviews` and `review_comments` spread over them, `labels` and `milestones`
    shared, authors among `users` logins `user1`…; item k (1-based) is created `updated_base` +
    k hours and its comments minutes after it. `touch` numbers are updated at `touched_at`
    (default: two days after the last generated item) with their first comment (or, without
    comments, their body) edited then."""
    full = repo.full_name
    rng = random.Random(spec.get("seed", 0))
    n_issues, n_pulls = int(spec.get("issues", 0)), int(spec.get("pulls", 0))
    total = n_issues + n_pulls
    base = parse_time(spec.get("updated_base", "2024-01-01T00:00:00Z"))
    users = [f"user{i}" for i in range(1, int(spec.get("users", 10)) + 1)] or [owner_login]
    label_names = [add_label(model, full, f"label-{i}", f"{(i * 2654435761) % 0xFFFFFF:06x}", f"Generated label {i}")
                   for i in range(int(spec.get("labels", 5)))]
    for i in range(1, int(spec.get("milestones", 3)) + 1):
        number = max(model.milestones, default=0) + 1
        at = base + i * MINUTE
        model.milestones[number] = Milestone(
            id=stable_id("github", "milestone", full, str(number)), number=number, title=f"Milestone {i}",
            state="open", description=None, due_on=base + (total + 24 * i) * HOUR, created=at, updated=at, closed=None,
            creator=owner_login)
    milestone_numbers = [None] + sorted(model.milestones)
    ids = stable_id("github", "generated", full) * 1_000_000
    pull_numbers = set(rng.sample(range(offset + 1, offset + total + 1), n_pulls)) if n_pulls else set()
    touch = set(spec.get("touch", []))
    touched_at = time_or(spec.get("touched_at"), base + (total + 48) * HOUR)

    generated = []
    for k in range(1, total + 1):
        number = offset + k
        created = base + k * HOUR
        closed = rng.random() < 0.5
        is_pull = number in pull_numbers
        user = rng.choice(users)
        issue = Issue(
            number=number, id=ids + k, title=f"Generated {'pull request' if is_pull else 'issue'} {number}",
            body=f"Item {number} of {full}. {rng.choice(FILLER)}", state="closed" if closed else "open",
            state_reason=("completed" if rng.random() < 0.8 else "not_planned") if closed and not is_pull else None,
            user=user, labels=rng.sample(label_names, min(len(label_names), rng.randrange(3))),
            assignees=[rng.choice(users)] if rng.random() < 0.3 else [], milestone=rng.choice(milestone_numbers),
            created=created, updated=created, closed=None, closed_by=None, locked=False, lock_reason=None,
            comments=[], pull=None)
        if is_pull:
            merged = closed and rng.random() < 0.7
            issue.pull = Pull(
                id=ids + 500_000 + k, head=f"feature-{number}", base=repo.default_branch,
                head_sha=fake_sha(full, "head", number), base_sha=fake_sha(full, "base", repo.default_branch),
                merged=None, merged_by=owner_login if merged else None,
                merge_commit_sha=fake_sha(full, "merge", number) if merged else None,
                draft=not closed and rng.random() < 0.1, reviews=[], review_comments=[], requested_reviewers=[])
        model.issues[number] = issue
        generated.append(issue)
    generated_pulls = [i for i in generated if i.pull is not None]

    for j in range(int(spec.get("comments", 0))):
        issue = generated[rng.randrange(total)] if total else None
        if issue is None:
            break
        at = issue.created + (len(issue.comments) + 1) * MINUTE
        issue.comments.append(Comment(ids + 100_000 + j, issue.number, rng.choice(users),
                                      f"Comment {j + 1} on #{issue.number}. {rng.choice(FILLER)}", at, at))
    for j in range(int(spec.get("reviews", len(generated_pulls))) if generated_pulls else 0):
        issue = rng.choice(generated_pulls)
        pull = issue.pull
        pull.reviews.append(Review(
            id=ids + 600_000 + j, number=issue.number, user=rng.choice(users), state=rng.choice(REVIEW_STATES),
            body=f"Review {j + 1}.", submitted=issue.created + (len(pull.reviews) + 30) * MINUTE,
            commit_id=pull.head_sha))
    for j in range(int(spec.get("review_comments", 2 * len(generated_pulls))) if generated_pulls else 0):
        issue = rng.choice(generated_pulls)
        pull = issue.pull
        at = issue.created + (len(pull.review_comments) + 31) * MINUTE
        position = rng.randrange(1, 40)
        reply_to = pull.review_comments[-1].id if pull.review_comments and rng.random() < 0.3 else None
        pull.review_comments.append(ReviewComment(
            id=ids + 700_000 + j, number=issue.number, user=rng.choice(users), body=f"Review comment {j + 1}.",
            path=f"src/file{rng.randrange(10)}.rs", position=position, original_position=position, line=position,
            original_line=position, side="RIGHT", start_line=None, start_side=None,
            diff_hunk=f"@@ -{position},3 +{position},4 @@\n context\n-old\n+new\n+more", commit_id=pull.head_sha,
            original_commit_id=pull.head_sha, in_reply_to_id=reply_to,
            review_id=pull.reviews[0].id if pull.reviews else None, created=at, updated=at))

    for issue in generated:
        last = max([issue.created] + [c.created for c in issue.comments])
        if issue.state == "closed":
            issue.closed = last + MINUTE
            issue.closed_by = issue.user
            if issue.pull is not None and issue.pull.merged_by is not None:
                issue.pull.merged = issue.closed
            last = issue.closed
        issue.updated = last
        if issue.number in touch:
            issue.updated = touched_at
            if issue.comments:
                comment = issue.comments[0]
                comment.body += f"\n\nEdited {touched_at.isoformat()}."
                comment.updated = touched_at
            else:
                issue.body += f"\n\nEdited {touched_at.isoformat()}."
