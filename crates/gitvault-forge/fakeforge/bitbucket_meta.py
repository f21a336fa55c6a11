"""Bitbucket Cloud's repository metadata endpoints — pull requests, their comments (general and
inline) and activity, issues and their comments — in the shapes of bitbucket-cloud-openapi3.yml
(`pullrequest`, `pullrequest_comment` with `inline` {path, from, to}, the activity entries
`update` / `approval` / `changes_requested`, `issue`, `issue_comment`).

The world is a Bitbucket repository entry's `pulls`, `issues` and `has_issues` (see README.md).
Pages are Bitbucket's envelope: `{"pagelen", "size", "page", "values", "next"}`, `pagelen` at most
50 here, `page` from 1. A pull request's or an issue's `updated_on` is the latest of its own and
its comments' and activity's, as on Bitbucket, where a comment moves its thread.
"""

from core import can_see, json_response, page_slice, page_url, parse_time, stable_uuid

DEFAULT_PAGELEN = 10
MAX_PAGELEN = 50
PULL_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")


def bb_date(text):
    """A world date (RFC 3339) in Bitbucket's form."""
    return parse_time(text).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


def latest(entry, *lists):
    dates = [entry.get("updated_on") or entry.get("created_on") or "2024-01-01T00:00:00Z"]
    for items in lists:
        for item in items:
            dates.append(item.get("updated_on") or item.get("created_on") or item.get("date") or dates[0])
    return max(dates, key=lambda d: parse_time(d))


class Metadata:
    """The metadata routes of the Bitbucket forge module; `handle` answers
    `repositories/{workspace}/{slug}/{rest…}`."""

    def __init__(self, forge):
        self.forge = forge

    # Shapes.

    def user(self, login):
        uuid = "{" + stable_uuid("bitbucket", "user", login) + "}"
        return {"type": "user", "display_name": login, "uuid": uuid, "nickname": login,
                "account_id": stable_uuid("bitbucket", "account", login),
                "links": {"self": self.forge.link(f"{self.forge.api_base}/users/{uuid}"),
                          "html": self.forge.link(f"/bitbucket/{uuid}/")}}

    def api(self, repo, rest):
        return self.forge.link(f"{self.forge.api_base}/repositories/{repo.full_name}/{rest}")

    def html(self, repo, rest):
        return self.forge.link(f"/bitbucket/{repo.full_name}/{rest}")

    def endpoint(self, repo, branch):
        commit = stable_uuid("bitbucket", "commit", repo.full_name, branch).replace("-", "")[:12]
        return {"branch": {"name": branch}, "commit": {"type": "commit", "hash": commit},
                "repository": self.forge.repo_ref(repo)}

    def pull(self, repo, raw, full):
        n = raw["id"]
        rest = f"pullrequests/{n}"
        body = {
            "type": "pullrequest", "id": n, "title": raw.get("title", ""),
            "rendered": {"title": {"raw": raw.get("title", ""), "markup": "markdown"}},
            "summary": content(raw.get("description", "")),
            "description": raw.get("description", ""), "state": raw.get("state", "OPEN"),
            "author": self.user(raw.get("author", "alice")),
            "source": self.endpoint(repo, raw.get("source", "feature")),
            "destination": self.endpoint(repo, raw.get("destination", "main")),
            "merge_commit": {"hash": "0" * 12} if raw.get("state") == "MERGED" else None,
            "comment_count": len(raw.get("comments", [])), "task_count": 0,
            "close_source_branch": bool(raw.get("close_source_branch", False)), "reason": raw.get("reason", ""),
            "created_on": bb_date(raw.get("created_on", "2024-01-01T00:00:00Z")),
            "updated_on": bb_date(latest(raw, raw.get("comments", []), raw.get("activity", []))),
            "links": {"self": self.api(repo, rest), "html": self.html(repo, f"pull-requests/{n}"),
                      "comments": self.api(repo, rest + "/comments"), "activity": self.api(repo, rest + "/activity"),
                      "approve": self.api(repo, rest + "/approve"), "diff": self.api(repo, rest + "/diff"),
                      "commits": self.api(repo, rest + "/commits"), "merge": self.api(repo, rest + "/merge"),
                      "decline": self.api(repo, rest + "/decline")},
        }
        if full:
            # As on Bitbucket, the listing leaves out who reviews and who took part.
            approved = {a["user"] for a in raw.get("activity", []) if a.get("type") == "approval"}
            body["reviewers"] = [self.user(login) for login in raw.get("reviewers", [])]
            body["participants"] = [{"type": "participant", "user": self.user(login), "role": "REVIEWER",
                                     "approved": login in approved, "state": "approved" if login in approved else None}
                                    for login in raw.get("reviewers", [])]
        return body

    def comment(self, repo, kind, n, raw):
        cid = raw["id"]
        body = {
            "type": "pullrequest_comment" if kind == "pullrequests" else "issue_comment", "id": cid,
            "user": self.user(raw.get("user", "alice")),
            "content": content(raw.get("content", "")),
            "deleted": bool(raw.get("deleted", False)),
            "created_on": bb_date(raw.get("created_on", "2024-01-01T00:00:00Z")),
            "updated_on": bb_date(raw.get("updated_on") or raw.get("created_on", "2024-01-01T00:00:00Z")),
            "links": {"self": self.api(repo, f"{kind}/{n}/comments/{cid}"),
                      "html": self.html(repo, f"{'pull-requests' if kind == 'pullrequests' else 'issues'}/{n}"
                                              f"#comment-{cid}")},
        }
        if kind == "pullrequests":
            body["pullrequest"] = {"type": "pullrequest", "id": n, "links": {"self": self.api(repo, f"{kind}/{n}")}}
            if raw.get("inline"):
                inline = raw["inline"]
                body["inline"] = {"path": inline["path"], "from": inline.get("from"), "to": inline.get("to")}
        else:
            body["issue"] = {"type": "issue", "id": n, "links": {"self": self.api(repo, f"issues/{n}")}}
        if raw.get("parent"):
            parent = raw["parent"]
            body["parent"] = {"id": parent, "links": {"self": self.api(repo, f"{kind}/{n}/comments/{parent}")}}
        return body

    def activity(self, repo, raw, entry):
        pull = {"type": "pullrequest", "id": raw["id"], "title": raw.get("title", ""),
                "links": {"self": self.api(repo, f"pullrequests/{raw['id']}")}}
        kind = entry.get("type", "approval")
        date = bb_date(entry.get("date", "2024-01-01T00:00:00Z"))
        if kind == "update":
            inner = {"state": entry.get("state", raw.get("state", "OPEN")), "title": raw.get("title", ""),
                     "description": raw.get("description", ""), "date": date,
                     "author": self.user(entry.get("user", raw.get("author", "alice"))),
                     "source": self.endpoint(repo, raw.get("source", "feature")),
                     "destination": self.endpoint(repo, raw.get("destination", "main")), "reason": ""}
        else:
            inner = {"date": date, "user": self.user(entry.get("user", "alice")), "pullrequest": pull}
        return {"pull_request": pull, kind: inner}

    def issue(self, repo, raw):
        n = raw["id"]
        return {
            "type": "issue", "id": n, "title": raw.get("title", ""), "state": raw.get("state", "new"),
            "kind": raw.get("kind", "bug"), "priority": raw.get("priority", "major"),
            "content": content(raw.get("content", "")),
            "reporter": self.user(raw.get("reporter", "alice")),
            "assignee": self.user(raw["assignee"]) if raw.get("assignee") else None,
            "votes": 0, "watches": 1, "component": None, "milestone": None, "version": None,
            "repository": self.forge.repo_ref(repo),
            "created_on": bb_date(raw.get("created_on", "2024-01-01T00:00:00Z")),
            "updated_on": bb_date(latest(raw, raw.get("comments", []))), "edited_on": None,
            "links": {"self": self.api(repo, f"issues/{n}"), "html": self.html(repo, f"issues/{n}"),
                      "comments": self.api(repo, f"issues/{n}/comments")},
        }

    # Answers.

    def paged(self, req, items, shape, most=MAX_PAGELEN):
        pagelen = min(req.int_arg("pagelen", DEFAULT_PAGELEN), most)
        page = req.int_arg("page", 1)
        chosen, last = page_slice(items, page, pagelen)
        body = {"pagelen": pagelen, "size": len(items), "page": page, "values": [shape(i) for i in chosen]}
        if page < last:
            body["next"] = page_url(self.forge.app.base_url, req.path, req.query, {"page": page + 1})
        if page > 1:
            body["previous"] = page_url(self.forge.app.base_url, req.path, req.query, {"page": min(page - 1, last)})
        return json_response(200, body)

    def handle(self, req, repo, rest):
        """Answer `rest` under a repository the caller may see, or None when it names nothing."""
        raw = repo.raw
        pulls = {p["id"]: p for p in raw.get("pulls", [])}
        match rest:
            case ["pullrequests"]:
                states = [v.upper() for k, v in req.query if k == "state"] or ["OPEN"]
                items = [p for p in pulls.values() if p.get("state", "OPEN") in states]
                items = sorted_by(items, req.arg("sort"))
                return self.paged(req, items, lambda p: self.pull(repo, p, full=False))
            case ["pullrequests", n] if number(n) in pulls:
                return json_response(200, self.pull(repo, pulls[number(n)], full=True))
            case ["pullrequests", n, "comments"] if number(n) in pulls:
                comments = pulls[number(n)].get("comments", [])
                return self.paged(req, comments, lambda c: self.comment(repo, "pullrequests", number(n), c), 100)
            case ["pullrequests", n, "comments", cid] if number(n) in pulls:
                found = [c for c in pulls[number(n)].get("comments", []) if c["id"] == number(cid)]
                return json_response(200, self.comment(repo, "pullrequests", number(n), found[0])) if found else None
            case ["pullrequests", n, "activity"] if number(n) in pulls:
                pull = pulls[number(n)]
                return self.paged(req, pull.get("activity", []), lambda a: self.activity(repo, pull, a))
            case ["issues", *more]:
                if not raw.get("has_issues", False):
                    return self.forge.not_found("Repository has no issue tracker.")
                return self.issue_routes(req, repo, more)
        return None

    def issue_routes(self, req, repo, more):
        issues = {i["id"]: i for i in repo.raw.get("issues", [])}
        match more:
            case []:
                items = sorted_by(list(issues.values()), req.arg("sort"))
                return self.paged(req, items, lambda i: self.issue(repo, i))
            case [n] if number(n) in issues:
                return json_response(200, self.issue(repo, issues[number(n)]))
            case [n, "comments"] if number(n) in issues:
                comments = issues[number(n)].get("comments", [])
                return self.paged(req, comments, lambda c: self.comment(repo, "issues", number(n), c), 100)
            case [n, "comments", cid] if number(n) in issues:
                found = [c for c in issues[number(n)].get("comments", []) if c["id"] == number(cid)]
                return json_response(200, self.comment(repo, "issues", number(n), found[0])) if found else None
        return None


def content(raw):
    """A `content` / `summary` object: the raw text, its markup, a rendering."""
    return {"raw": raw, "markup": "markdown", "html": "<p>" + raw + "</p>"}


def number(text):
    return int(text) if str(text).isdigit() else None


def sorted_by(items, sort):
    """Bitbucket's `sort` on `id`, `created_on` or `updated_on` (`-` for descending); else by id."""
    field = (sort or "id").lstrip("-")
    key = {"created_on": lambda i: (i.get("created_on", ""), i["id"]),
           "updated_on": lambda i: (i.get("updated_on", ""), i["id"])}.get(field, lambda i: i["id"])
    return sorted(items, key=key, reverse=bool(sort) and sort.startswith("-"))
