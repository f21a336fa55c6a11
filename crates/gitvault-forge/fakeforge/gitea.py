"""Gitea (to be written)."""

from core import Forge, json_response


class Gitea(Forge):
    name = "gitea"
    prefix = "/gitea"
    api_base = "/gitea/api"

    def handle_api(self, req, segments):
        return self.not_found()

    def git_target(self, segments):
        return None

    def not_found(self, what="Not Found"):
        return json_response(404, {"message": what})
