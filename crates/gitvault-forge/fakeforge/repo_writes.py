"""Edits of a repository entry in the GitHub-shaped world schema (`issues`, `pulls` with `reviews`
and `review_comments`, `labels`, `milestones`, `releases` with `assets`), which the GitHub and
Gitea write endpoints share: both forges' read endpoints are built from that schema by
`github_data`. Each function records one `core.World.apply` edit; the callers check the request
against the world first, holding `App.write_lock`, and shape the answer from the rebuilt model.

Items created here carry explicit numbers, ids and times, so that a world rewrite does not
renumber them and the answers stay what they were."""

import datetime
import os

from core import rfc3339


def now():
    return rfc3339(datetime.datetime.now(datetime.timezone.utc))


def repo_path(repo):
    """The edit path of a `core.Repo`'s world entry."""
    return [repo.forge, "repos", {"owner": repo.raw["owner"], "name": repo.raw["name"]}]


def item_path(repo, model, number):
    """The edit path of issue or pull request `number`; LookupError when the world gives it
    without a `number` of its own (an edit could not find it again)."""
    field = "pulls" if model.issues[number].pull is not None else "issues"
    if not any(entry.get("number") == number for entry in repo.raw.get(field, [])):
        raise LookupError(f"#{number} has no number of its own in world.json, so the fake cannot edit it")
    return repo_path(repo) + [field, {"number": number}]


def release_path(repo, release):
    if any(entry.get("id") == release.id for entry in repo.raw.get("releases", [])):
        return repo_path(repo) + ["releases", {"id": release.id}]
    return repo_path(repo) + ["releases", {"tag_name": release.tag}]


def add_repo(app, forge_name, entry):
    app.world.apply([{"path": [forge_name, "repos"], "append": entry}])


def set_repo(app, repo, fields):
    app.world.apply([{"path": repo_path(repo), "set": fields}])


def add(app, repo, field, entry):
    """Append `entry` to the repository's list `field` (labels, milestones, issues, pulls,
    releases)."""
    app.world.apply([{"path": repo_path(repo) + [field], "append": entry}])


def set_milestone(app, repo, number, fields):
    if not any(entry.get("number") == number for entry in repo.raw.get("milestones", [])):
        raise LookupError(f"milestone {number} has no number of its own in world.json")
    app.world.apply([{"path": repo_path(repo) + ["milestones", {"number": number}], "set": fields}])


def set_item(app, repo, model, number, fields):
    app.world.apply([{"path": item_path(repo, model, number), "set": fields}])


def add_to_item(app, repo, model, number, field, entry, item_fields=None):
    """Append `entry` to the item's `comments`, `reviews` or `review_comments`; `item_fields`
    also set on the item in the same edit batch."""
    path = item_path(repo, model, number)
    edits = [{"path": path + [field], "append": entry}]
    if item_fields:
        edits.append({"path": path, "set": item_fields})
    app.world.apply(edits)


def set_release(app, repo, release, fields):
    app.world.apply([{"path": release_path(repo, release), "set": fields}])


def add_asset(app, repo, release, entry, data):
    """Store an uploaded asset's bytes under DIR/uploads/ and add it to the release."""
    relative = os.path.join("uploads", repo.forge, *repo.owner.split("/"), repo.name, str(entry["id"]))
    path = os.path.join(app.root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    entry = dict(entry, file=relative)
    app.world.apply([{"path": release_path(repo, release) + ["assets"], "append": entry}])
    return entry
