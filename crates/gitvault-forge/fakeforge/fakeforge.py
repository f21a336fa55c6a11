#!/usr/bin/env python3
"""The fake forge: GitHub, GitLab, Bitbucket and Gitea REST APIs and git smart HTTP on 127.0.0.1,
driven by DIR/world.json. See README.md beside this file.

    python3 fakeforge.py --root DIR [--port 0]

Writes the port it listens on to DIR/port once listening; stops on SIGTERM or SIGINT, and by
itself when the process that started it goes away.
"""

import argparse
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from core import App, Server  # noqa: E402
from bitbucket import Bitbucket  # noqa: E402
from gitea import Gitea  # noqa: E402
from github import GitHub  # noqa: E402
from gitlab import GitLab  # noqa: E402


def write_port(root, port):
    path = os.path.join(root, "port")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, path)


def watch_parent(parent):
    """Exit when orphaned: a test process killed outright cannot stop us through Drop."""
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="directory holding world.json, git/, the logs")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args()
    os.makedirs(os.path.join(args.root, "git"), exist_ok=True)

    app = App(args.root, args.port)
    for forge in (GitHub, GitLab, Bitbucket, Gitea):
        app.add(forge)
    server = Server(app)

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    write_port(app.root, app.port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        try:
            os.remove(os.path.join(app.root, "port"))
        except OSError:
            pass


if __name__ == "__main__":
    main()
