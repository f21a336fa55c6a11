"""GitLab's project metadata endpoints — issues, merge requests, notes, discussions (diff notes
with their position), approvals, labels, milestones, releases with their links, members,
protected branches — in the shapes of GitLab's REST API v4 documentation (`Issue`,
`MergeRequest`, `Note`, `Discussion`, `Label`, `Milestone`, `Release`, `Link`, `Member`,
`ProtectedBranch`; users are `UserBasic`).

The model of a project is built from its world.json entry once per world generation. Release
links whose bytes the fake holds (`file` or `text`) are served at a project upload URL outside
the API; a link with a `url` of its own points elsewhere and is not served.
"""

import datetime
import hashlib
import os
import threading

from core import INVALID, Response, can_see, json_response, parse_time, quote, rfc3339, stable_id
from github_data import branch_sha, fake_sha

HOUR = datetime.timedelta(hours=1)
MINUTE = datetime.timedelta(minutes=1)

ACCESS = {10: "Guest", 20: "Reporter", 30: "Developer", 40: "Maintainer", 50: "Owner"}
PUSH_LEVELS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}


def time_or(value, default):
    return parse_time(value) if value else default


def time_field(value):
    return rfc3339(value, millis=True) if value is not None else None


def date_field(value):
    return value.date().isoformat() if value is not None else None


class Item:
    """A plain record: the fields given, None for the others."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


class Model:
    def __init__(self):
        self.labels = {}          # name -> Item, world order
        self.milestones = {}      # iid -> Item
        self.issues = {}          # iid -> Item
        self.merge_requests = {}  # iid -> Item
        self.releases = []
        self.links = {}           # (tag, id) -> Item
        self.members = []         # (username, access_level)
        self.protected = []       # Item
        self.uploads = []         # Item: files posted to `POST /projects/:id/uploads`


def note_from_world(full, kind, iid, index, raw, parent_created, default_author):
    created = time_or(raw.get("created_at"), parent_created + (index + 1) * MINUTE)
    return Item(
        id=raw.get("id") or stable_id("gitlab", "note", full, kind, str(iid), str(index)),
        author=raw.get("author", default_author), body=raw.get("body", ""), system=bool(raw.get("system", False)),
        internal=bool(raw.get("internal", False)), created=created, updated=time_or(raw.get("updated_at"), created),
        diff=None, thread=bool(raw.get("thread", False)), reply_to=raw.get("reply_to"))


def item_from_world(project, full, kind, iid, raw, owner):
    created = time_or(raw.get("created_at"), project.created + iid * HOUR + (30 * MINUTE if kind == "mr" else datetime.timedelta()))
    merged = time_or(raw.get("merged_at"), None)
    state = raw.get("state", "merged" if merged else "opened")
    closed = time_or(raw.get("closed_at"), None)
    updated = time_or(raw.get("updated_at"), None)
    if state == "closed" and closed is None:
        closed = updated or created
    author = raw.get("author", owner)
    item = Item(
        iid=iid, id=raw.get("id") or stable_id("gitlab", kind, full, str(iid)),
        title=raw.get("title", f"{'Merge request' if kind == 'mr' else 'Issue'} {iid}"),
        description=raw.get("description", ""), state=state, author=author, labels=list(raw.get("labels", [])),
        assignees=list(raw.get("assignees", [])), milestone=raw.get("milestone"), created=created,
        updated=updated or max(created, closed or created, merged or created),
        closed=closed if state == "closed" else None,
        closed_by=raw.get("closed_by", author) if state == "closed" else None,
        confidential=bool(raw.get("confidential", False)), locked=raw.get("discussion_locked"), notes=[])
    for index, n in enumerate(raw.get("notes", [])):
        item.notes.append(note_from_world(full, kind, iid, index, n, created, author))
    return item


def build(root, project, owner):
    """The model of `project` (a core.Repo of the GitLab section) from its world entry; `owner`
    is the default author."""
    raw = project.raw
    full = project.full_name
    model = Model()
    for entry in raw.get("labels", []):
        name = entry["name"] if isinstance(entry, dict) else entry
        add_label(model, full, name, entry if isinstance(entry, dict) else {})
    for index, entry in enumerate(raw.get("milestones", [])):
        iid = entry.get("iid", index + 1)
        created = time_or(entry.get("created_at"), project.created + index * HOUR)
        model.milestones[iid] = Item(
            iid=iid, id=entry.get("id") or stable_id("gitlab", "milestone", full, str(iid)),
            title=entry.get("title", f"Milestone {iid}"), description=entry.get("description", ""),
            state=entry.get("state", "active"), created=created, updated=time_or(entry.get("updated_at"), created),
            due=time_or(entry.get("due_date"), None), start=time_or(entry.get("start_date"), None))
    for entry in raw.get("issues", []):
        iid = entry["iid"]
        if iid not in model.issues:
            model.issues[iid] = item_from_world(project, full, "issue", iid, entry, owner)
    git_dir = project.git_path(root)
    for entry in raw.get("merge_requests", []):
        iid = entry["iid"]
        if iid in model.merge_requests:
            continue
        mr = item_from_world(project, full, "mr", iid, entry, owner)
        mr.source = entry.get("source_branch", f"branch-{iid}")
        mr.target = entry.get("target_branch", project.default_branch)
        mr.sha = entry.get("sha") or branch_sha(git_dir, mr.source) or fake_sha(full, "head", mr.source, iid)
        mr.base_sha = entry.get("base_sha") or branch_sha(git_dir, mr.target) or fake_sha(full, "base", mr.target)
        mr.merged = time_or(entry.get("merged_at"), None) if mr.state == "merged" else None
        mr.merged_by = entry.get("merged_by", owner) if mr.merged else None
        mr.merge_commit_sha = entry.get("merge_commit_sha") or (fake_sha(full, "merge", iid) if mr.merged else None)
        mr.draft = bool(entry.get("draft", False))
        mr.approved_by = list(entry.get("approved_by", []))
        mr.reviewers = list(entry.get("reviewers", []))
        for index, d in enumerate(entry.get("diff_notes", [])):
            note = note_from_world(full, "diff", iid, index, d, mr.created, mr.author)
            new_path = d.get("new_path", d.get("old_path", "README.md"))
            note.diff = Item(old_path=d.get("old_path", new_path), new_path=new_path, old_line=d.get("old_line"),
                             new_line=d.get("new_line", None if "old_line" in d else 1), reply_to=d.get("reply_to"),
                             resolved=bool(d.get("resolved", False)), resolved_by=d.get("resolved_by"),
                             head_sha=d.get("head_sha", mr.sha), base_sha=d.get("base_sha", mr.base_sha))
            mr.notes.append(note)
        model.merge_requests[iid] = mr
    for item in [*model.issues.values(), *model.merge_requests.values()]:
        for name in item.labels:
            add_label(model, full, name, {})
        item.notes.sort(key=lambda n: (n.created, n.id))
        # Saving a note touches its noteable, as on GitLab: a new or edited note moves the issue's
        # (merge request's) `updated_at`.
        if item.notes:
            item.updated = max(item.updated, max(n.updated for n in item.notes))
    releases(root, project, owner, model)
    for entry in raw.get("uploads", []):
        model.uploads.append(Item(id=entry["id"], secret=entry["secret"], name=entry["name"],
                                  path=os.path.join(root, entry["file"])))
    for entry in raw.get("members", []):
        if isinstance(entry, str):
            model.members.append((entry, 30))
        else:
            model.members.append((entry["username"], int(entry.get("access_level", 30))))
    for index, entry in enumerate(raw.get("protected_branches", [])):
        model.protected.append(Item(
            id=entry.get("id") or stable_id("gitlab", "protected", full, entry["name"]), name=entry["name"],
            push=int(entry.get("push_access_level", 40)), merge=int(entry.get("merge_access_level", 40)),
            force=bool(entry.get("allow_force_push", False)),
            code_owners=bool(entry.get("code_owner_approval_required", False))))
    return model


def add_label(model, full, name, entry):
    if name not in model.labels:
        model.labels[name] = Item(id=entry.get("id") or stable_id("gitlab", "label", full, name), name=name,
                                  color=entry.get("color", "#6699cc"), description=entry.get("description"),
                                  priority=entry.get("priority"))


def releases(root, project, owner, model):
    full = project.full_name
    for index, entry in enumerate(project.raw.get("releases", [])):
        tag = entry.get("tag_name", f"v{index + 1}")
        created = time_or(entry.get("created_at"), project.created + index * HOUR)
        release = Item(tag=tag, name=entry.get("name", tag), description=entry.get("description", ""),
                       created=created, released=time_or(entry.get("released_at"), created),
                       author=entry.get("author", owner), milestones=list(entry.get("milestones", [])),
                       sha=entry.get("commit_sha") or fake_sha(full, "tag", tag), links=[])
        for li, raw in enumerate(entry.get("links", [])):
            link = Item(id=raw.get("id") or stable_id("gitlab", "link", full, tag, str(li)),
                        name=raw.get("name", f"asset-{li}"), link_type=raw.get("link_type", "other"),
                        filepath=raw.get("filepath"), url=raw.get("url"),
                        path=os.path.join(root, raw["file"]) if "file" in raw else None, text=raw.get("text"))
            release.links.append(link)
            model.links[(tag, link.id)] = link
        model.releases.append(release)


def link_data(link):
    if link.path is not None:
        with open(link.path, "rb") as f:
            return f.read()
    return (link.text or "").encode()


def secret(project, link):
    return hashlib.sha256(f"fakeforge-upload:{project.key}:{link.id}".encode()).hexdigest()[:32]


class Metadata:
    """The metadata endpoints of the GitLab forge module; `handle` answers
    `projects/{id}/{rest…}` for a project the caller may see."""

    def __init__(self, forge):
        self.forge = forge
        self.lock = threading.Lock()
        self.generation = None
        self.models = {}

    def model(self, project):
        generation, _ = self.forge.app.world.current()
        with self.lock:
            if generation != self.generation:
                self.generation = generation
                self.models = {}
            found = self.models.get(project.key)
            if found is None:
                found = build(self.forge.app.root, project, self.owner(project))
                self.models[project.key] = found
            return found

    def owner(self, project):
        """Who authored what the world does not attribute: the namespace's user, else `root`."""
        return project.owner if project.owner in self.forge.users() else "root"

    # Shapes.

    def user(self, name):
        return self.forge.user_shape(name) if name else None

    def api(self, project, path=""):
        return self.forge.url(f"{self.forge.api_base}/projects/{project.id}{path}")

    def web(self, project, path=""):
        return self.forge.web(f"{project.full_name}{path}")

    def milestone(self, project, model, iid):
        m = model.milestones.get(iid)
        if m is None:
            return None
        today = datetime.datetime.now(datetime.timezone.utc).date()
        return {
            "id": m.id, "iid": m.iid, "project_id": project.id, "title": m.title, "description": m.description,
            "state": m.state, "created_at": time_field(m.created), "updated_at": time_field(m.updated),
            "due_date": date_field(m.due), "start_date": date_field(m.start),
            "expired": bool(m.due and m.due.date() < today), "web_url": self.web(project, f"/-/milestones/{m.iid}"),
        }

    def label(self, model, name, with_counts=False):
        label = model.labels[name]
        body = {"id": label.id, "name": label.name, "color": label.color, "text_color": "#FFFFFF",
                "description": label.description, "description_html": label.description or "",
                "subscribed": False, "priority": label.priority, "is_project_label": True}
        if with_counts:
            def count(items, state):
                return sum(1 for i in items if name in i.labels and i.state == state)
            body.update({"open_issues_count": count(model.issues.values(), "opened"),
                         "closed_issues_count": count(model.issues.values(), "closed"),
                         "open_merge_requests_count": count(model.merge_requests.values(), "opened")})
        return body

    def common(self, project, model, item, kind):
        """The fields issues and merge requests share."""
        sigil = "!" if kind == "mr" else "#"
        assignees = [self.user(a) for a in item.assignees]
        user_notes = sum(1 for n in item.notes if not n.system)
        return {
            "id": item.id, "iid": item.iid, "project_id": project.id, "title": item.title,
            "description": item.description, "state": item.state, "created_at": time_field(item.created),
            "updated_at": time_field(item.updated), "closed_at": time_field(item.closed),
            "closed_by": self.user(item.closed_by), "labels": list(item.labels),
            "milestone": self.milestone(project, model, item.milestone), "author": self.user(item.author),
            "assignees": assignees, "assignee": assignees[0] if assignees else None,
            "user_notes_count": user_notes, "upvotes": 0, "downvotes": 0, "discussion_locked": item.locked,
            "references": {"short": f"{sigil}{item.iid}", "relative": f"{sigil}{item.iid}",
                           "full": f"{project.full_name}{sigil}{item.iid}"},
            "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": None,
                           "human_total_time_spent": None},
            "task_completion_status": {"count": 0, "completed_count": 0},
        }

    def issue(self, project, model, issue):
        body = self.common(project, model, issue, "issue")
        api = self.api(project, f"/issues/{issue.iid}")
        body.update({
            "type": "ISSUE", "issue_type": "issue", "merge_requests_count": 0, "due_date": None,
            "confidential": issue.confidential, "web_url": self.web(project, f"/-/issues/{issue.iid}"),
            "has_tasks": False, "severity": "UNKNOWN", "moved_to_id": None, "service_desk_reply_to": None,
            "_links": {"self": api, "notes": api + "/notes", "award_emoji": api + "/award_emoji",
                       "project": self.api(project), "closed_as_duplicate_of": None},
        })
        return body

    def merge_request(self, project, model, mr, full):
        body = self.common(project, model, mr, "mr")
        body.update({
            "merged_by": self.user(mr.merged_by), "merge_user": self.user(mr.merged_by),
            "merged_at": time_field(mr.merged), "target_branch": mr.target, "source_branch": mr.source,
            "reviewers": [self.user(r) for r in mr.reviewers], "source_project_id": project.id,
            "target_project_id": project.id, "draft": mr.draft, "work_in_progress": mr.draft,
            "merge_when_pipeline_succeeds": False, "merge_status": "can_be_merged",
            "detailed_merge_status": "not_open" if mr.state != "opened" else "mergeable", "sha": mr.sha,
            "merge_commit_sha": mr.merge_commit_sha, "squash_commit_sha": None,
            "should_remove_source_branch": None, "force_remove_source_branch": False, "squash": False,
            "squash_on_merge": False, "reference": f"!{mr.iid}", "web_url": self.web(project, f"/-/merge_requests/{mr.iid}"),
            "has_conflicts": False, "blocking_discussions_resolved": all(
                n.diff.resolved for n in mr.notes if n.diff is not None),
            "imported": False, "imported_from": "none", "prepared_at": time_field(mr.created),
        })
        if full:
            body.update({
                "subscribed": False, "changes_count": str(len({n.diff.new_path for n in mr.notes if n.diff})),
                "latest_build_started_at": None, "latest_build_finished_at": None,
                "first_deployed_to_production_at": None, "pipeline": None, "head_pipeline": None,
                "diff_refs": {"base_sha": mr.base_sha, "head_sha": mr.sha, "start_sha": mr.base_sha},
                "merge_error": None, "first_contribution": False, "diverged_commits_count": 0,
                "rebase_in_progress": False,
            })
        return body

    def note(self, project, item, note, noteable_type):
        body = {
            "id": note.id, "type": None, "body": note.body, "attachment": None, "author": self.user(note.author),
            "created_at": time_field(note.created), "updated_at": time_field(note.updated), "system": note.system,
            "noteable_id": item.id, "noteable_type": noteable_type, "project_id": project.id,
            "noteable_iid": item.iid, "resolvable": False, "confidential": note.internal, "internal": note.internal,
            "imported": False, "imported_from": "none", "commands_changes": {},
        }
        if note.diff is not None:
            d = note.diff
            body.update({
                "type": "DiffNote", "resolvable": True, "resolved": d.resolved,
                "resolved_by": self.user(d.resolved_by) if d.resolved else None,
                "resolved_at": time_field(note.updated) if d.resolved else None,
                "position": {"base_sha": d.base_sha, "start_sha": d.base_sha, "head_sha": d.head_sha,
                             "old_path": d.old_path, "new_path": d.new_path, "position_type": "text",
                             "old_line": d.old_line, "new_line": d.new_line, "line_range": None},
            })
        return body

    def discussions(self, project, mr):
        """Every note of `mr` as discussions: one per plain note (`individual_note`), one per thread
        (a diff note or a note with `thread`, and the notes that `reply_to` it), ordered by their
        first note."""
        threads = {}
        order = []
        for note in mr.notes:
            reply_to = note.diff.reply_to if note.diff is not None else note.reply_to
            root = reply_to if reply_to in {n.id for n in mr.notes} else note.id
            if root not in threads:
                threads[root] = []
                order.append(root)
            threads[root].append(note)
        out = []
        for root in order:
            notes = threads[root]
            diff = notes[0].diff is not None or notes[0].thread
            body_notes = []
            for n in notes:
                shaped = self.note(project, mr, n, "MergeRequest")
                if diff and shaped["type"] is None:
                    shaped["type"] = "DiscussionNote"
                body_notes.append(shaped)
            out.append({"id": hashlib.sha1(f"{project.key}:discussion:{root}".encode()).hexdigest(),
                        "individual_note": not diff, "notes": body_notes})
        return out

    def release(self, project, model, release):
        tag = quote(release.tag)
        api = self.api(project, f"/releases/{tag}")
        links = [self.link(project, release, link) for link in release.links]
        archive = self.web(project, f"/-/archive/{tag}/{project.name}-{tag}")
        sources = [{"format": fmt, "url": f"{archive}.{fmt}"} for fmt in ("zip", "tar.gz", "tar.bz2", "tar")]
        issues = self.web(project, "/-/issues")
        mrs = self.web(project, "/-/merge_requests")
        return {
            "tag_name": release.tag, "description": release.description, "name": release.name,
            "created_at": time_field(release.created), "released_at": time_field(release.released),
            "upcoming_release": False, "author": self.user(release.author),
            "commit": {"id": release.sha, "short_id": release.sha[:8], "title": f"Release {release.tag}",
                       "created_at": time_field(release.created), "parent_ids": [],
                       "message": f"Release {release.tag}", "author_name": release.author,
                       "author_email": f"{release.author}@example.com", "authored_date": time_field(release.created),
                       "committer_name": release.author, "committer_email": f"{release.author}@example.com",
                       "committed_date": time_field(release.created),
                       "web_url": self.web(project, f"/-/commit/{release.sha}")},
            "milestones": [m for m in (self.milestone(project, model, iid) for iid in release.milestones) if m],
            "commit_path": f"/{project.full_name}/-/commit/{release.sha}",
            "tag_path": f"/{project.full_name}/-/tags/{tag}",
            "assets": {"count": len(sources) + len(links), "sources": sources, "links": links},
            "evidences": [],
            "_links": {"self": self.web(project, f"/-/releases/{tag}"), "edit_url": self.web(project, f"/-/releases/{tag}/edit"),
                       "opened_issues_url": f"{issues}?release_tag={tag}&scope=all&state=opened",
                       "closed_issues_url": f"{issues}?release_tag={tag}&scope=all&state=closed",
                       "opened_merge_requests_url": f"{mrs}?release_tag={tag}&scope=all&state=opened",
                       "merged_merge_requests_url": f"{mrs}?release_tag={tag}&scope=all&state=merged",
                       "closed_merge_requests_url": f"{mrs}?release_tag={tag}&scope=all&state=closed"},
            "_api": api,
        }

    def link(self, project, release, link):
        url = link.url or self.web(project, f"/uploads/{secret(project, link)}/{quote(link.name)}")
        direct = url
        if link.filepath:
            direct = self.web(project, f"/-/releases/{quote(release.tag)}/downloads{link.filepath}")
        return {"id": link.id, "name": link.name, "url": url, "direct_asset_url": direct,
                "link_type": link.link_type}

    def member(self, name, level):
        body = dict(self.user(name))
        body.update({"access_level": level, "created_at": time_field(parse_time("2020-01-01T00:00:00Z")),
                     "created_by": None, "expires_at": None, "membership_state": "active"})
        return body

    def protected_branch(self, p):
        def levels(level, kind):
            return [{"id": stable_id("gitlab", kind, str(p.id)), "access_level": level,
                     "access_level_description": PUSH_LEVELS.get(level, ACCESS.get(level, str(level))),
                     "deploy_key_id": None, "user_id": None, "group_id": None}]
        return {"id": p.id, "name": p.name, "push_access_levels": levels(p.push, "push"),
                "merge_access_levels": levels(p.merge, "merge"), "allow_force_push": p.force,
                "code_owner_approval_required": p.code_owners}

    # Answers.

    def level(self, project, model, identity):
        """The access level the world gives `identity` (members of the project and of its groups);
        None when it says nothing, which these endpoints treat as every right."""
        if identity is None:
            return None
        for name, level in self.all_members(project, model):
            if name.lower() == identity.login.lower():
                return level
        return None

    def all_members(self, project, model):
        """Members of the project and of its ancestor groups (the highest level wins), as
        `members/all` lists them."""
        found = {}
        groups = self.forge.groups()
        parts = project.owner.split("/")
        for i in range(1, len(parts) + 1):
            group = groups.get("/".join(parts[:i]))
            for entry in (group.raw.get("members", []) if group else []):
                name, level = (entry, 30) if isinstance(entry, str) else (entry["username"],
                                                                          int(entry.get("access_level", 30)))
                found[name.lower()] = (name, max(level, found.get(name.lower(), (name, 0))[1]))
        for name, level in model.members:
            found[name.lower()] = (name, max(level, found.get(name.lower(), (name, 0))[1]))
        return list(found.values())

    def handle(self, req, project, rest):
        """Answer `GET /projects/{id}/{rest…}`, or None when `rest` is not a metadata route."""
        model = self.model(project)
        paged = self.forge.paged
        match rest:
            case ["issues"]:
                items = filter_items(req, list(model.issues.values()), "created_at")
                return paged(req, items, lambda i: self.issue(project, model, i))
            case ["issues", iid] if number(iid) in model.issues:
                return json_response(200, self.issue(project, model, model.issues[number(iid)]))
            case ["issues", iid, "notes"] if number(iid) in model.issues:
                issue = model.issues[number(iid)]
                notes = sort_notes(req, issue.notes)
                return paged(req, notes, lambda n: self.note(project, issue, n, "Issue"))
            case ["merge_requests"]:
                items = filter_items(req, list(model.merge_requests.values()), "created_at")
                return paged(req, items, lambda m: self.merge_request(project, model, m, full=False))
            case ["merge_requests", iid, *more] if number(iid) in model.merge_requests:
                return self.merge_request_routes(req, project, model, model.merge_requests[number(iid)], more)
            case ["labels"]:
                counts = req.arg("with_counts") == "true"
                return paged(req, list(model.labels), lambda name: self.label(model, name, counts))
            case ["milestones"]:
                items = list(model.milestones.values())
                state = req.arg("state")
                if state in ("active", "closed"):
                    items = [m for m in items if m.state == state]
                return paged(req, items, lambda m: self.milestone(project, model, m.iid))
            case ["releases"]:
                key = (lambda r: (r.created, r.tag)) if req.arg("order_by") == "created_at" else (
                    lambda r: (r.released, r.tag))
                items = sorted(model.releases, key=key, reverse=req.arg("sort", "desc") == "desc")
                return paged(req, items, lambda r: public_release(self.release(project, model, r)))
            case ["releases", tag] if any(r.tag == tag for r in model.releases):
                release = next(r for r in model.releases if r.tag == tag)
                return json_response(200, public_release(self.release(project, model, release)))
            case ["releases", tag, "assets", "links"] if any(r.tag == tag for r in model.releases):
                release = next(r for r in model.releases if r.tag == tag)
                return paged(req, release.links, lambda link: self.link(project, release, link))
            case ["members", "all"]:
                if req.identity is None:
                    return self.forge.unauthorized()
                members = sorted(self.all_members(project, model), key=lambda m: m[0].lower())
                return paged(req, members, lambda m: self.member(*m))
            case ["protected_branches"]:
                if req.identity is None:
                    return self.forge.unauthorized()
                level = self.level(project, model, req.identity)
                if level is not None and level < 40:
                    return json_response(403, {"message": "403 Forbidden"})
                return paged(req, model.protected, self.protected_branch)
        return None

    def merge_request_routes(self, req, project, model, mr, more):
        match more:
            case []:
                body = self.merge_request(project, model, mr, full=True)
                level = self.level(project, model, req.identity)
                body["user"] = {"can_merge": req.identity is not None and (level is None or level >= 30)}
                return json_response(200, body)
            case ["notes"]:
                notes = sort_notes(req, mr.notes)
                return self.forge.paged(req, notes, lambda n: self.note(project, mr, n, "MergeRequest"))
            case ["discussions"]:
                return self.forge.paged(req, self.discussions(project, mr), lambda d: d)
            case ["approvals"]:
                return json_response(200, {
                    "id": mr.id, "iid": mr.iid, "project_id": project.id, "title": mr.title,
                    "description": mr.description, "state": mr.state, "created_at": time_field(mr.created),
                    "updated_at": time_field(mr.updated), "merge_status": "can_be_merged",
                    "approved": bool(mr.approved_by), "approvals_required": 0, "approvals_left": 0,
                    "approved_by": [{"user": self.user(u)} for u in mr.approved_by],
                })
        return None

    # Release link targets, outside the API: `/gitlab/{project}/uploads/{secret}/{name}` and
    # `/gitlab/{project}/-/releases/{tag}/downloads/{filepath}` (a 302 to the link's URL); files
    # posted to the uploads API at the same upload URL and at `/gitlab/-/project/{id}/uploads/…`.

    def download_target(self, segments):
        if len(segments) == 6 and segments[:2] == ["-", "project"] and segments[3] == "uploads":
            return segments[2], "upload", segments[4], segments[5]
        if "-" in segments:
            i = segments.index("-")
            rest = segments[i + 1:]
            if len(rest) >= 4 and rest[0] == "releases" and rest[2] == "downloads":
                return "/".join(segments[:i]), "direct", rest[1], "/" + "/".join(rest[3:])
        if "uploads" in segments:
            i = segments.index("uploads")
            if i >= 2 and len(segments) == i + 3:
                return "/".join(segments[:i]), "upload", segments[i + 1], segments[i + 2]
        return None

    def download(self, req, identity, segments):
        target = self.download_target(segments)
        if target is None:
            return None
        path, kind, a, b = target
        project = self.forge.find_project(path)
        if project is None or identity is INVALID or not can_see(identity, project):
            return None
        model = self.model(project)
        if kind == "direct":
            release = next((r for r in model.releases if r.tag == a), None)
            link = next((li for li in (release.links if release else []) if li.filepath == b), None)
            if link is None:
                return None
            location = self.link(project, release, link)["url"]
            return Response(302, b"", [("Location", location)], content_type=None)
        link = next((li for li in model.links.values() if li.url is None and secret(project, li) == a
                     and quote(li.name) == quote(b)), None)
        if link is None:
            upload = next((u for u in model.uploads if u.secret == a and u.name == b), None)
            if upload is None:
                return None
            with open(upload.path, "rb") as f:
                data = f.read()
            return Response(200, data, [("Content-Disposition", f"attachment; filename=\"{upload.name}\"")],
                            content_type="application/octet-stream")
        return Response(200, link_data(link), [("Content-Disposition", f"attachment; filename=\"{link.name}\"")],
                        content_type="application/octet-stream")


def public_release(body):
    body.pop("_api", None)
    return body


def number(text):
    return int(text) if text.isdigit() else None


def filter_items(req, items, default_order):
    """GitLab's issue and merge request list filters: `state` (opened, closed, merged, all),
    `updated_after`/`updated_before`, `created_after`, `order_by` created_at|updated_at, `sort`
    (desc)."""
    state = req.arg("state", "all")
    if state in ("opened", "closed", "merged", "locked"):
        items = [i for i in items if i.state == state]
    for name, field, after in (("updated_after", "updated", True), ("updated_before", "updated", False),
                               ("created_after", "created", True), ("created_before", "created", False)):
        value = req.arg(name)
        if value:
            try:
                bound = parse_time(value)
            except ValueError:
                continue
            items = [i for i in items if (getattr(i, field) >= bound if after else getattr(i, field) <= bound)]
    order = req.arg("order_by", default_order)
    key = (lambda i: (i.updated, i.iid)) if order == "updated_at" else (lambda i: (i.created, i.iid))
    return sorted(items, key=key, reverse=req.arg("sort", "desc") == "desc")


def sort_notes(req, notes):
    """Notes as GitLab lists them: `order_by` created_at|updated_at (created_at), `sort` (desc)."""
    key = (lambda n: (n.updated, n.id)) if req.arg("order_by") == "updated_at" else (lambda n: (n.created, n.id))
    return sorted(notes, key=key, reverse=req.arg("sort", "desc") == "desc")
