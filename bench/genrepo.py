#!/usr/bin/env python3
"""Generate a realistic git repository, deterministically from a seed.

Why this exists: benchmarks of a git backup tool are only meaningful on
repositories that look like real ones -- long histories, branches and merges,
renames and deletions, source files that evolve by small edits (so that git's
delta compression matters), and incompressible binary assets (so that the
backup tools' own compression does not flatter them).  Real repositories
cannot be downloaded here and would not be reproducible anyway, so we make
one.  The same seed and size always produce the same commits and object ids
(given the same git version).

Speed: everything is streamed into a single `git fast-import` process through
a pipe; no git command is run per commit.  The repository is written bare and
finished with one `git repack -ad` plus `git pack-refs --all`, so it looks
like a normally gc'd server-side repository.

Usage:
    genrepo.py --size medium --seed 1 OUT.git        # create a new repository
    genrepo.py --add-commits 20 --seed 1 OUT.git     # append 20 commits

Only the Python 3.11 standard library and the `git` binary are needed.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------
# Size profiles
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Knobs for one repository size; tuned so that the packed size and the
    object count land near the documented targets (see README.md)."""

    commits: int  # total commits, merges included
    init_text_files: int  # text files in the initial import
    binary_budget: int  # bytes of fresh (incompressible) binary content
    binary_max: int  # largest binary blob
    feature_rate: float  # chance per step to open a feature branch
    tag_every: int  # an annotated release tag every N main commits


PROFILES = {
    # ~5 MB packed, a few thousand objects: for smoke tests and CI.
    "small": Profile(commits=400, init_text_files=120, binary_budget=3_800_000,
                     binary_max=400_000, feature_rate=0.04, tag_every=60),
    # ~200 MB packed, ~100k objects, thousands of commits.
    "medium": Profile(commits=7700, init_text_files=900, binary_budget=160_000_000,
                      binary_max=2_000_000, feature_rate=0.03, tag_every=250),
    # ~1 GB packed.
    "large": Profile(commits=20000, init_text_files=2500, binary_budget=850_000_000,
                     binary_max=2_000_000, feature_rate=0.03, tag_every=400),
}

BINARY_MIN = 10_000
EPOCH = 1_500_000_000  # first commit date: 2017-07-14, fixed for determinism

# ---------------------------------------------------------------------------
# Vocabulary for paths, identifiers, comments and commit messages
# ---------------------------------------------------------------------------

WORDS = """
account action adapter address agent alias allocator anchor archive argument
array asset audit auth backend backup batch bearer binding blob block body
bound branch bridge bucket buffer builder bundle cache callback canvas
channel chart checksum chunk cipher claim client clock cluster codec column
command commit config connection context cookie counter cursor daemon
decoder delta diff digest dispatch document domain driver editor element
encoder endpoint engine entry error event executor export factory feature
field filter flag format frame gateway graph group guard handle handler
hash header heap helper history hook index input instance interval issue
item iterator job journal kernel key label layer layout ledger lexer limit
link listener loader lock logger mapper marker matrix member memory merge
message metric migration mirror model module monitor mutex node notifier
object offset option output owner packet page pair parser patch path peer
pipeline plugin policy pool port prefix printer process profile program
project prompt provider proxy queue quota range reader record reducer ref
registry release remote renderer replica report repository request resolver
resource response result retry revision role route router rule runner
sample scanner schedule schema scope secret segment selector sender session
settings shard signal signer sink slot snapshot socket source span spec
stage state status storage store stream strategy string subject suffix
summary supervisor table tag target task template tenant token topic trace
tracker transaction transform tree trigger tuple type unit update upload
user validator value vault vector version view visitor volume wallet watcher
window worker writer zone
""".split()

VERBS = """
add apply build check clean close collect compute convert copy create decode
delete detect drop emit encode ensure fetch find flush format handle init
insert load lookup merge move normalize open parse prepare push read record
refresh register release reload remove render replace reset resolve restore
retry run save scan send serialize set sort split start stop store sync
track trim update upload validate verify wait walk write
""".split()

ADJ = """
active async atomic base cached current default dirty empty expired final
global hidden initial inner internal last latest local main max min missing
new next old outer partial pending primary private public raw ready remote
root safe shared stale static strict temp total unique valid
""".split()

AUTHORS = [
    ("Alice Martin", "alice@example.com"), ("Bob Nguyen", "bob@example.com"),
    ("Chen Wei", "chen.wei@example.com"), ("Dana Kowalski", "dana@example.org"),
    ("Emeka Obi", "emeka@example.net"), ("Fatima Zahra", "fz@example.com"),
    ("Gustav Berg", "gustav@example.se"), ("Hana Sato", "hana@example.jp"),
    ("Ivan Petrov", "ivan@example.ru"), ("Julia Rossi", "julia@example.it"),
    ("Kofi Mensah", "kofi@example.com"), ("Lena Fischer", "lena@example.de"),
    ("Mateo Garcia", "mateo@example.es"), ("Nora Lind", "nora@example.no"),
    ("Omar Haddad", "omar@example.com"), ("Priya Raman", "priya@example.in"),
    ("Quinn Taylor", "quinn@example.com"), ("Ravi Shah", "ravi@example.com"),
    ("build-bot", "bot@ci.example.com"),
]

TEXT_EXTS = {  # extension -> weight in new text files
    ".rs": 26, ".py": 16, ".c": 5, ".h": 4, ".js": 8, ".ts": 8, ".go": 6,
    ".md": 9, ".toml": 4, ".json": 4, ".yaml": 4, ".txt": 2, ".sh": 4,
}
BINARY_EXTS = [".png", ".jpg", ".bin", ".dat", ".woff2", ".pdf", ".zip", ".so"]
BINARY_EXT_SET = set(BINARY_EXTS)
BINARY_DIRS = ["assets", "assets/img", "assets/fonts", "static/img", "data",
               "testdata/fixtures", "vendor/blobs", "docs/images"]
TOP_DIRS = ["src", "lib", "tests", "docs", "tools", "scripts", "crates",
            "pkg", "cmd", "web", "internal", "examples", "bench", "config"]

COMMIT_PREFIXES = ["fix", "feat", "refactor", "chore", "docs", "test", "perf",
                   "build", "ci", "style"]


def ident(rng: random.Random, style: str = "snake") -> str:
    """A plausible identifier made of one to three vocabulary words."""
    n = rng.choice((1, 2, 2, 2, 3))
    parts = [rng.choice(WORDS if i else (VERBS + ADJ + WORDS)) for i in range(n)]
    if style == "camel":
        return parts[0] + "".join(p.capitalize() for p in parts[1:])
    if style == "pascal":
        return "".join(p.capitalize() for p in parts)
    return "_".join(parts)


def sentence(rng: random.Random, lo: int = 3, hi: int = 9) -> str:
    """A short English-ish phrase for comments and commit messages."""
    words = [rng.choice(VERBS)]
    for _ in range(rng.randint(lo, hi) - 1):
        words.append(rng.choice(WORDS if rng.random() < 0.7 else ADJ + ["the", "a", "of", "for", "when", "in", "and"]))
    return " ".join(words)


# ---------------------------------------------------------------------------
# Text content: source-like lines that compress like real code
# ---------------------------------------------------------------------------

COMMENT = {".rs": "//", ".c": "//", ".h": "//", ".js": "//", ".ts": "//",
           ".go": "//", ".py": "#", ".sh": "#", ".toml": "#", ".yaml": "#"}


def code_line(rng: random.Random, ext: str, depth: int) -> str:
    """One statement-like line in the flavour of the file's language."""
    pad = "    " * depth
    a, b, c = ident(rng), ident(rng), ident(rng)
    n = rng.choice((0, 1, 2, 8, 16, 32, 64, 100, 256, 1024, rng.randint(0, 9999)))
    r = rng.random()
    if r < 0.08 and ext in COMMENT:
        return f"{pad}{COMMENT[ext]} {sentence(rng)}"
    if ext == ".py":
        forms = [f"{pad}{a} = self.{b}({c}, {n})", f"{pad}if {a} is None:",
                 f"{pad}return {a}.{b}()", f"{pad}{a}.append({b}[{n}])",
                 f"{pad}raise {ident(rng, 'pascal')}Error(\"{sentence(rng, 2, 5)}\")",
                 f"{pad}for {a} in self.{b}:", f"{pad}log.debug(\"{b}: %s\", {a})"]
    elif ext == ".go":
        forms = [f"{pad}{ident(rng, 'camel')} := {ident(rng, 'camel')}.{ident(rng, 'pascal')}({n})",
                 f"{pad}if err != nil {{ return nil, fmt.Errorf(\"{sentence(rng, 2, 4)}: %w\", err) }}",
                 f"{pad}defer {ident(rng, 'camel')}.Close()", f"{pad}return {ident(rng, 'camel')}, nil"]
    elif ext in (".js", ".ts"):
        forms = [f"{pad}const {ident(rng, 'camel')} = await {ident(rng, 'camel')}.{ident(rng, 'camel')}({n});",
                 f"{pad}if (!{ident(rng, 'camel')}) return null;",
                 f"{pad}this.{ident(rng, 'camel')} = {ident(rng, 'camel')} ?? {n};",
                 f"{pad}console.warn(`{sentence(rng, 2, 5)}`);"]
    elif ext in (".c", ".h"):
        forms = [f"{pad}{a} = {b}({c}, {n});", f"{pad}if ({a} < 0) goto out;",
                 f"{pad}memcpy({a}->{b}, {c}, sizeof(*{c}));", f"{pad}return -E{rng.choice(WORDS).upper()};"]
    elif ext == ".md":
        return rng.choice(["", f"- {sentence(rng, 4, 12)}", f"{sentence(rng, 6, 16)}.",
                           f"`{a}` {sentence(rng, 3, 8)}."])
    elif ext in (".toml", ".yaml", ".json", ".txt"):
        sep = {".toml": " = ", ".yaml": ": ", ".json": ": ", ".txt": " "}[ext]
        q = '"' if ext == ".json" else ""
        return f"{pad}{q}{a}{q}{sep}{rng.choice([str(n), chr(34) + b + chr(34), 'true', 'false'])}{',' if ext == '.json' else ''}"
    elif ext == ".sh":
        forms = [f"{pad}{a.upper()}=\"${{{b.upper()}:-{n}}}\"", f"{pad}{rng.choice(VERBS)}_{b} \"${a.upper()}\" || exit 1",
                 f"{pad}echo \"{sentence(rng, 2, 6)}\""]
    else:  # Rust
        forms = [f"{pad}let {a} = {b}.{c}({n})?;", f"{pad}let mut {a}: Vec<{ident(rng, 'pascal')}> = Vec::with_capacity({n});",
                 f"{pad}if {a}.len() > {n} {{ return Err(Error::{ident(rng, 'pascal')}); }}",
                 f"{pad}self.{a}.insert({b}, {c}.clone());", f"{pad}tracing::debug!({a}, \"{sentence(rng, 2, 5)}\");",
                 f"{pad}{a}.{b}(&{c})?;"]
    return rng.choice(forms)


def code_block(rng: random.Random, ext: str) -> list[str]:
    """A function-like block: header, body of statements, closing line."""
    name = ident(rng)
    body = [code_line(rng, ext, 1 + (rng.random() < 0.3)) for _ in range(rng.randint(3, 22))]
    if ext == ".py":
        return [f"    def {name}(self, {ident(rng)}, {ident(rng)}=None):"] + ["    " + s for s in body] + [""]
    if ext == ".md":
        return [f"## {sentence(rng, 2, 5).capitalize()}", ""] + body + [""]
    if ext in (".toml", ".yaml", ".json", ".txt", ".sh"):
        head = {".toml": f"[{name}]", ".yaml": f"{name}:", ".json": f"\"{name}\": {{",
                ".txt": f"{name}", ".sh": f"{name}() {{"}[ext]
        tail = {".json": ["},"], ".sh": ["}"]}.get(ext, [])
        return [head] + body + tail + [""]
    if ext == ".go":
        head = f"func ({ident(rng, 'camel')[:1]} *{ident(rng, 'pascal')}) {ident(rng, 'pascal')}(ctx context.Context) error {{"
    elif ext in (".js", ".ts"):
        head = f"export async function {ident(rng, 'camel')}({ident(rng, 'camel')}, opts = {{}}) {{"
    elif ext in (".c", ".h"):
        head = f"static int {name}(struct {ident(rng)} *{ident(rng)}, size_t {ident(rng)})\n{{"
    else:
        head = f"pub fn {name}(&mut self, {ident(rng)}: &{ident(rng, 'pascal')}) -> Result<{ident(rng, 'pascal')}> {{"
    return [head] + body + ["}", ""]


def new_text(rng: random.Random, ext: str) -> tuple[str, ...]:
    """A whole new text file: a header then a handful of blocks."""
    lines: list[str] = []
    if ext in COMMENT:
        lines += [f"{COMMENT[ext]} {sentence(rng, 4, 10)}", f"{COMMENT[ext]} SPDX-License-Identifier: Apache-2.0", ""]
    if ext == ".py":
        lines += [f"import {rng.choice(WORDS)}", f"from .{rng.choice(WORDS)} import {ident(rng, 'pascal')}", "",
                  f"class {ident(rng, 'pascal')}:"]
    elif ext == ".rs":
        lines += [f"use crate::{rng.choice(WORDS)}::{{{ident(rng, 'pascal')}, {ident(rng, 'pascal')}}};", ""]
    elif ext == ".md":
        lines += [f"# {sentence(rng, 2, 4).capitalize()}", ""]
    for _ in range(rng.choice((1, 2, 3, 4, 6, 8, 12))):
        lines += code_block(rng, ext)
    return tuple(lines)


def edit_text(rng: random.Random, ext: str, lines: tuple[str, ...]) -> tuple[str, ...]:
    """A small, realistic edit: tweak, replace, insert or delete a few lines."""
    out = list(lines)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        pos = rng.randrange(len(out) + 1)
        r = rng.random()
        if len(out) > 900:  # keep files from growing without bound
            r = 0.9
        if r < 0.45 and out:  # change one line in place
            pos = min(pos, len(out) - 1)
            depth = (len(out[pos]) - len(out[pos].lstrip(" "))) // 4
            out[pos] = code_line(rng, ext, depth)
        elif r < 0.65:  # add a few statements
            out[pos:pos] = [code_line(rng, ext, 1) for _ in range(rng.randint(1, 6))]
        elif r < 0.80:  # add a new function
            out[pos:pos] = code_block(rng, ext)
        else:  # delete a few lines
            del out[pos:pos + rng.randint(1, 8)]
    if not out:
        out = list(new_text(rng, ext))
    return tuple(out)


# ---------------------------------------------------------------------------
# Binary content: incompressible, sometimes a modified version of an earlier one
# ---------------------------------------------------------------------------


def new_binary(rng: random.Random, max_size: int) -> bytes:
    """Random bytes with a log-uniform size between 10 KB and max_size."""
    size = int(math.exp(rng.uniform(math.log(BINARY_MIN), math.log(max(max_size, BINARY_MIN + 1)))))
    return rng.randbytes(size)


def modify_binary(rng: random.Random, data: bytes) -> bytes:
    """A new version of an asset: a few regions rewritten, maybe grown or cut."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = rng.randint(64, 8192)
        off = rng.randrange(max(1, len(buf) - n))
        buf[off:off + n] = rng.randbytes(n)
    r = rng.random()
    if r < 0.25:
        buf += rng.randbytes(rng.randint(1, max(2, len(buf) // 10)))
    elif r < 0.4 and len(buf) > 2 * BINARY_MIN:
        del buf[-rng.randint(1, len(buf) // 10):]
    return bytes(buf)


# ---------------------------------------------------------------------------
# Repository model and the fast-import stream
# ---------------------------------------------------------------------------

# An entry in a tree: (kind, dataref, payload).
#   kind    't' (text, payload = tuple of lines) or 'b' (binary, payload = bytes)
#   dataref ':<mark>' for blobs written in this stream, or a 40-hex object id
#   payload None when not loaded yet (--add-commits reads it lazily from git)
Entry = tuple


@dataclass
class Branch:
    """A feature branch being worked on in parallel with main."""

    name: str
    state: dict
    changes: dict = field(default_factory=dict)  # path -> Entry or None (deleted)
    tip: str = ""
    length: int = 0
    target: int = 0
    merge: bool = True


class BlobReader:
    """Reads existing blobs through one `git cat-file --batch` process."""

    def __init__(self, repo: str):
        self.proc = subprocess.Popen(["git", "-C", repo, "cat-file", "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, oid: str) -> bytes:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(oid.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        size = int(header[2])
        data = self.proc.stdout.read(size)
        self.proc.stdout.read(1)
        return data

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


class Generator:
    """Drives a `git fast-import` process and keeps the model of every branch."""

    def __init__(self, repo: str, rng: random.Random, profile: Profile, now: int,
                 reader: BlobReader | None = None, tag: str = ""):
        self.repo = repo
        self.rng = rng
        self.p = profile
        self.now = now
        self.reader = reader
        self.tag = tag  # makes branch/tag names unique across --add-commits runs
        self.mark = 0
        self.commits = 0
        self.binary_bytes = 0
        self.dirs: list[str] = []
        self.bin_dirs: list[str] = list(BINARY_DIRS)
        self.merged_refs: list[str] = []
        self.proc = subprocess.Popen(
            ["git", "-C", repo, "fast-import", "--quiet", "--done"],
            stdin=subprocess.PIPE)
        self.out = self.proc.stdin

    # -- low-level stream ---------------------------------------------------

    def _w(self, s: str) -> None:
        self.out.write(s.encode())

    def _data(self, b: bytes) -> None:
        self.out.write(b"data %d\n" % len(b))
        self.out.write(b)
        self.out.write(b"\n")

    def blob(self, content: bytes) -> str:
        self.mark += 1
        self._w(f"blob\nmark :{self.mark}\n")
        self._data(content)
        return f":{self.mark}"

    def commit(self, ref: str, parent: str | None, ops: list[tuple], msg: str,
               merge: str | None = None) -> str:
        """Write one commit; ops are ('M', path, dataref) or ('D', path)."""
        self.now += self.rng.randint(300, 30_000)
        name, email = self.rng.choice(AUTHORS)
        self.mark += 1
        self.commits += 1
        self._w(f"commit {ref}\nmark :{self.mark}\n"
                f"author {name} <{email}> {self.now - self.rng.randint(0, 3600)} +0000\n"
                f"committer {name} <{email}> {self.now} +0000\n")
        self._data(msg.encode())
        if parent:
            self._w(f"from {parent}\n")
        if merge:
            self._w(f"merge {merge}\n")
        for op in ops:
            if op[0] == "M":
                self._w(f"M 100644 {op[2]} {op[1]}\n")
            else:
                self._w(f"D {op[1]}\n")
        self._w("\n")
        return f":{self.mark}"

    def annotated_tag(self, name: str, target: str) -> None:
        n, e = self.rng.choice(AUTHORS)
        self._w(f"tag {name}\nfrom {target}\ntagger {n} <{e}> {self.now} +0000\n")
        self._data(f"Release {name}\n\n{sentence(self.rng, 5, 12)}.\n".encode())

    def finish(self) -> None:
        self._w("done\n")
        self.out.close()
        if self.proc.wait() != 0:
            sys.exit("git fast-import failed")
        if self.reader:
            self.reader.close()

    # -- content helpers ----------------------------------------------------

    def payload(self, entry: Entry) -> object:
        """The content of an entry, loading it from git if needed."""
        kind, ref, data = entry
        if data is None:
            raw = self.reader.read(ref)  # type: ignore[union-attr]
            data = raw if kind == "b" else tuple(raw.decode("utf-8", "replace").removesuffix("\n").split("\n"))
        return data

    def text_entry(self, lines: tuple[str, ...]) -> Entry:
        return ("t", self.blob(("\n".join(lines) + "\n").encode()), lines)

    def binary_entry(self, data: bytes) -> Entry:
        return ("b", self.blob(data), data)

    def new_dir(self) -> str:
        rng = self.rng
        if self.dirs and rng.random() < 0.7:
            base = rng.choice(self.dirs)
            if base.count("/") >= 4:
                base = base.rsplit("/", 1)[0]
        else:
            base = rng.choice(TOP_DIRS)
        d = f"{base}/{rng.choice(WORDS)}"
        self.dirs.append(d)
        return d

    def text_path(self, state: dict) -> str:
        rng = self.rng
        d = rng.choice(self.dirs) if self.dirs and rng.random() < 0.92 else self.new_dir()
        ext = rng.choices(list(TEXT_EXTS), weights=list(TEXT_EXTS.values()))[0]
        for _ in range(20):
            p = f"{d}/{ident(rng)}{ext}"
            if p not in state:
                return p
        return f"{d}/{ident(rng)}_{self.mark}{ext}"

    def binary_path(self, state: dict) -> str:
        rng = self.rng
        d = rng.choice(self.bin_dirs)
        if rng.random() < 0.1:
            d = f"{d}/{rng.choice(WORDS)}"
            self.bin_dirs.append(d)
        return f"{d}/{ident(rng, 'snake').replace('_', '-')}-{self.mark}{rng.choice(BINARY_EXTS)}"

    # -- one commit's worth of changes ---------------------------------------

    def change_set(self, state: dict, want_binary: bool) -> tuple[list[tuple], dict, str]:
        """Mutate `state` like a developer would; return (ops, changes, message)."""
        rng = self.rng
        ops: list[tuple] = []
        changes: dict = {}
        paths = list(state)
        texts = [p for p in paths if state[p][0] == "t"]
        bins = [p for p in paths if state[p][0] == "b"]
        scope = rng.choice(WORDS)
        kind = rng.choice(COMMIT_PREFIXES)

        def put(path: str, entry: Entry) -> None:
            state[path] = entry
            changes[path] = entry
            ops.append(("M", path, entry[1]))

        def drop(path: str) -> None:
            del state[path]
            changes[path] = None
            ops.append(("D", path))

        # Most commits edit a few existing text files.
        n_edit = min(len(texts), rng.choice((0, 1, 1, 1, 2, 2, 3, 4, 6)))
        for path in rng.sample(texts, n_edit) if texts else []:
            ext = os.path.splitext(path)[1]
            put(path, self.text_entry(edit_text(rng, ext, self.payload(state[path]))))
        r = rng.random()
        if r < 0.12 or not texts:  # new files
            for _ in range(rng.randint(1, 3)):
                path = self.text_path(state)
                put(path, self.text_entry(new_text(rng, os.path.splitext(path)[1])))
        elif r < 0.16 and len(texts) > 50:  # delete a file
            drop(rng.choice([p for p in texts if p in state] or texts))
        elif r < 0.20:  # rename a file, sometimes with an edit
            src = rng.choice(texts)
            if src in state:
                ext = os.path.splitext(src)[1]
                dst = f"{os.path.dirname(src)}/{ident(rng)}{ext}"
                if rng.random() < 0.3:
                    dst = f"{rng.choice(self.dirs or [os.path.dirname(src)])}/{os.path.basename(src)}"
                if dst not in state:
                    entry = state[src]
                    drop(src)
                    if rng.random() < 0.4:
                        entry = self.text_entry(edit_text(rng, ext, self.payload(entry)))
                    put(dst, entry)
        elif r < 0.205 and self.dirs:  # rename a directory
            old = rng.choice(self.dirs)
            new = f"{old.rsplit('/', 1)[0]}/{rng.choice(WORDS)}_{rng.choice(WORDS)}"
            moved = [p for p in paths if p.startswith(old + "/")]
            if moved and not any(p.startswith(new + "/") for p in paths):
                for p in moved:
                    entry = state[p]
                    drop(p)
                    put(new + p[len(old):], entry)
                self.dirs.append(new)
        # Binary assets: budget-driven additions, occasional new versions.
        if want_binary:
            put(self.binary_path(state), self.binary_entry(new_binary(rng, self.p.binary_max)))
            self.binary_bytes += len(state[ops[-1][1]][2])
            kind = rng.choice(("feat", "chore", "assets"))
        r = rng.random()
        if bins and r < 0.04:  # a new version of an existing asset, same path
            path = rng.choice(bins)
            if path in state:
                put(path, self.binary_entry(modify_binary(rng, self.payload(state[path]))))
        elif bins and r < 0.055:  # a modified copy under a new name
            path = rng.choice(bins)
            if path in state:
                base, ext = os.path.splitext(path)
                put(f"{base}-v{self.mark}{ext}", self.binary_entry(modify_binary(rng, self.payload(state[path]))))
        elif bins and r < 0.07:  # an asset is removed
            path = rng.choice(bins)
            if path in state:
                drop(path)
        if not ops:  # never an empty commit
            path = self.text_path(state)
            put(path, self.text_entry(new_text(rng, os.path.splitext(path)[1])))
        msg = f"{kind}({scope}): {sentence(rng, 3, 8)}\n"
        if rng.random() < 0.4:
            msg += f"\n{sentence(rng, 8, 20).capitalize()}.\n{sentence(rng, 6, 14).capitalize()}.\n"
        return ops, changes, msg

    # -- history ----------------------------------------------------------------

    def run(self, main: dict, main_tip: str | None, total: int, binary_budget: int,
            feature_rate: float, tag_every: int, first_binary_share: float = 0.0) -> None:
        """Write `total` commits: main-line work, feature branches and merges."""
        rng = self.rng
        features: list[Branch] = []
        main_commits = 0
        feature_no = 0
        start_commits = self.commits
        while self.commits - start_commits < total:
            done = (self.commits - start_commits + 1) / total
            want_binary = self.binary_bytes < binary_budget * (first_binary_share + (1 - first_binary_share) * done)
            # Merge a finished feature branch back into main.
            ready = [f for f in features if f.length >= f.target]
            if ready:
                f = ready[0]
                features.remove(f)
                if f.merge:
                    ops = []
                    for path, entry in f.changes.items():
                        if entry is None:
                            if path in main:
                                del main[path]
                                ops.append(("D", path))
                        else:
                            main[path] = entry
                            ops.append(("M", path, entry[1]))
                    who = rng.choice(AUTHORS)[0].split()[0].lower()
                    feature_no += 1
                    msg = f"Merge pull request #{rng.randint(100, 9999)} from {who}/{f.name.split('/', 1)[1]}\n\n{sentence(rng)}\n"
                    main_tip = self.commit("refs/heads/main", main_tip, ops, msg, merge=f.tip)
                    main_commits += 1
                    if rng.random() < 0.7:
                        self.merged_refs.append(f"refs/heads/{f.name}")
                continue
            # Open a new feature branch off main.
            if main_tip and len(features) < 3 and rng.random() < feature_rate:
                name = f"{rng.choice(('feature', 'fix', 'topic', 'wip'))}/{ident(rng).replace('_', '-')}{self.tag}-{self.commits}"
                features.append(Branch(name=name, state=dict(main), tip=main_tip,
                                       target=rng.randint(2, 15), merge=rng.random() < 0.85))
                continue
            # Otherwise a regular commit on main or on one of the features.
            if features and rng.random() < 0.45:
                f = rng.choice(features)
                ops, changes, msg = self.change_set(f.state, want_binary)
                f.changes.update(changes)
                f.tip = self.commit(f"refs/heads/{f.name}", f.tip, ops, msg)
                f.length += 1
            else:
                ops, _, msg = self.change_set(main, want_binary)
                main_tip = self.commit("refs/heads/main", main_tip, ops, msg)
                main_commits += 1
                if tag_every and main_commits % tag_every == 0:
                    v = main_commits // tag_every
                    self.annotated_tag(f"v{v // 10}.{v % 10}.0{self.tag}", main_tip)
                    if rng.random() < 0.3:  # a lightweight tag too
                        self._w(f"reset refs/tags/build-{self.commits}{self.tag}\nfrom {main_tip}\n\n")


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------


def git(repo: str, *args: str, capture: bool = False) -> str:
    r = subprocess.run(["git", "-C", repo, *args], check=True,
                       stdout=subprocess.PIPE if capture else None, text=True)
    return r.stdout if capture else ""


def repo_stats(repo: str) -> dict:
    """Object count and on-disk size, as `git count-objects -v` reports them."""
    out = git(repo, "count-objects", "-v", capture=True)
    kv = dict(line.split(": ", 1) for line in out.strip().splitlines())
    objects = int(kv["count"]) + int(kv["in-pack"])
    size = (int(kv["size"]) + int(kv["size-pack"])) * 1024
    return {"objects": objects, "packed_bytes": size, "packs": int(kv["packs"]),
            "loose": int(kv["count"])}


def delete_refs(repo: str, refs: list[str]) -> None:
    """Delete merged feature branches in one `git update-ref --stdin` call."""
    if refs:
        stdin = "".join(f"delete {r}\n" for r in refs)
        subprocess.run(["git", "-C", repo, "update-ref", "--stdin"], input=stdin,
                       text=True, check=True)


def generate(out: str, size: str, seed: int, force: bool) -> None:
    """Create a new bare repository at `out`."""
    p = PROFILES[size]
    if os.path.exists(out):
        if not force:
            sys.exit(f"{out} exists (use --force to replace it)")
        shutil.rmtree(out)
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", out], check=True)
    git(out, "config", "gc.auto", "0")  # no surprise auto-gc during benchmarks
    rng = random.Random(f"gitvault-bench:{size}:{seed}")
    t_start = time.perf_counter()
    g = Generator(out, rng, p, EPOCH)
    # Initial import: a project skeleton with some source and a few assets.
    state: dict = {}
    ops = []
    for _ in range(8):
        g.new_dir()
    for _ in range(p.init_text_files):
        path = g.text_path(state)
        state[path] = g.text_entry(new_text(rng, os.path.splitext(path)[1]))
        ops.append(("M", path, state[path][1]))
    while g.binary_bytes < p.binary_budget * 0.05:
        path = g.binary_path(state)
        state[path] = g.binary_entry(new_binary(rng, p.binary_max))
        g.binary_bytes += len(state[path][2])
        ops.append(("M", path, state[path][1]))
    tip = g.commit("refs/heads/main", None, ops, "Initial import\n")
    g.run(state, tip, p.commits - 1, p.binary_budget, p.feature_rate, p.tag_every,
          first_binary_share=0.05)
    g.finish()
    delete_refs(out, g.merged_refs)
    # fast-import's own pack has almost no useful deltas (it only deltas a blob
    # against the blob written just before it), and a plain `repack -ad` copies
    # that single pack nearly verbatim.  -f makes git search for deltas once,
    # with the default window, as a server's routine gc would have over time.
    # One thread: threaded delta search balances work by timing, so its packs
    # differ from run to run; single-threaded, the pack is byte-identical.
    t = time.perf_counter()
    git(out, "-c", "pack.threads=1", "repack", "-adf", "-q")
    git(out, "pack-refs", "--all")
    print(f"fast-import {t - t_start:.1f}s, repack -adf {time.perf_counter() - t:.1f}s")


def add_commits(repo: str, n: int, seed: int) -> None:
    """Append `n` commits on top of main, deterministically from seed and tip.

    The random stream is keyed by the current tip, so running this on two
    copies of the same repository gives identical commits, and running it
    twice in a row gives two different sets of changes."""
    tip = git(repo, "rev-parse", "refs/heads/main", capture=True).strip()
    now = int(git(repo, "log", "-1", "--format=%ct", tip, capture=True).strip())
    rng = random.Random(f"gitvault-bench:add:{seed}:{tip}:{n}")
    state: dict = {}
    dirs: set = set()
    listing = git(repo, "ls-tree", "-r", "-z", "--full-tree", tip, capture=True)
    for rec in listing.split("\0"):
        if not rec:
            continue
        meta, path = rec.split("\t", 1)
        mode, typ, oid = meta.split()
        if typ != "blob" or mode != "100644":
            continue
        kind = "b" if os.path.splitext(path)[1] in BINARY_EXT_SET else "t"
        state[path] = (kind, oid, None)
        if kind == "t" and "/" in path:
            dirs.add(path.rsplit("/", 1)[0])
    # Incrementals are small: ~1 new asset per 20 commits, few branches.
    profile = Profile(commits=n, init_text_files=0, binary_budget=0, binary_max=500_000,
                      feature_rate=0.05, tag_every=0)
    g = Generator(repo, rng, profile, now, reader=BlobReader(repo), tag=f"-{tip[:7]}")
    g.dirs = sorted(dirs)
    budget = int(n * 20_000)
    g.run(state, tip, n, budget, profile.feature_rate, 0)
    g.finish()
    delete_refs(repo, g.merged_refs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo", help="path of the bare repository to create or extend")
    ap.add_argument("--size", choices=sorted(PROFILES), default="small")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--add-commits", type=int, metavar="N",
                    help="append N commits to an existing repository instead of creating one")
    ap.add_argument("--force", action="store_true", help="replace an existing repository")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.add_commits is not None:
        add_commits(args.repo, args.add_commits, args.seed)
    else:
        generate(args.repo, args.size, args.seed, args.force)
    s = repo_stats(args.repo)
    print(f"{args.repo}: {s['objects']} objects, {s['packed_bytes'] / 1e6:.1f} MB packed "
          f"({s['packs']} packs, {s['loose']} loose), {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
