"""GitLab (to be written)."""

from core import Forge, json_response


class GitLab(Forge):
    name = "gitlab"
    prefix = "/gitlab"
    api_base = "/gitlab/api"

    def handle_api(self, req, segments):
        return self.not_found()

    def git_target(self, segments):
        return None

    def not_found(self, what="Not Found"):
        return json_response(404, {"message": what})
