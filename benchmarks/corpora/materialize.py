#!/usr/bin/env python3
"""Write the real-handbook evaluation corpora as folders of Markdown, ready for `policybot ingest FOLDER`.

Two public handbooks, each pinned to a commit, read straight out of a local git directory (bare or not;
no work tree and no network needed):

  18f       The TTS/18F handbook, https://github.com/18F/handbook, commit
            1e4955634d0369f17e5bbc0ebbf8f62e2a3dfe4b (2025-02-27). Public domain (US government work), CC0 1.0.
  basecamp  The 37signals (Basecamp) employee handbook, https://github.com/basecamp/handbook, commit
            c9536061f26d0b5bd9f2f900d63e27e9f4deb4ed (2026-05-01). Published openly on GitHub; the repository
            carries no license file, so the text is used here only locally, never committed.

Get the sources (once):

    git clone https://github.com/18F/handbook /tmp/18f-handbook
    git -C /tmp/18f-handbook checkout 1e4955634d0369f17e5bbc0ebbf8f62e2a3dfe4b   # optional: the script reads the commit
    git clone https://github.com/basecamp/handbook /tmp/basecamp-handbook

then:

    python3 benchmarks/corpora/materialize.py 18f --git-dir /tmp/18f-handbook
    python3 benchmarks/corpora/materialize.py basecamp --git-dir /tmp/basecamp-handbook

(Without --git-dir the mirror paths under /work/.mirror/ are used when they exist.) Output goes to
benchmarks/corpora/build/<name>/ (ignored by git; the corpus is never committed). The folder is wiped and
rewritten each time, so the result depends only on the pinned commit.

What is done to each page, and nothing more (the mess of a real handbook is the point):
  * 18F: the pages/ sections employees ask about (see EIGHTEEN_F_SECTIONS); pages whose front matter has
    `redirect_to` are skipped; `pages/` is dropped from the path, the rest of the relative path is kept, so
    the ingested `source` of pages/travel-and-leave/leave.md is `travel-and-leave/leave.md`.
  * Jekyll/Eleventy front matter is removed; its `title` becomes a `# Title` first line when the page has
    no H1 of its own.
  * Liquid: `{% comment %}…{% endcomment %}` blocks go entirely (they are comments); `{% raw %}` and
    `{% endraw %}` markers go but what they wrap stays verbatim; every other `{% … %}` and `{{ … }}` tag is
    removed (even multi-line ones); the text around them stays, so `[link]({% page "/x/" %})` becomes
    `[link]()`.
  * HTML comments `<!-- … -->` are removed.
  * basecamp: every top-level .md file, same treatment (it has no front matter or Liquid).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    commit: str
    mirror: str  # default local git dir
    prefixes: tuple[str, ...]  # which paths to take ("" = top level only)
    strip_prefix: str  # removed from the path to make the file name


EIGHTEEN_F_SECTIONS = (
    "about-us",
    "career-progression-framework",
    "general-information-and-resources",
    "getting-started",
    "hiring-staying-or-changing-jobs",
    "office-of-operations",
    "performance-management",
    "supervisor-resources",
    "tools",
    "training-and-development",
    "travel-and-leave",
)

SOURCES = {
    "18f": Source(
        name="18f",
        url="https://github.com/18F/handbook",
        commit="1e4955634d0369f17e5bbc0ebbf8f62e2a3dfe4b",
        mirror="/work/.mirror/18F+handbook/repo",
        prefixes=tuple(f"pages/{s}/" for s in EIGHTEEN_F_SECTIONS),
        strip_prefix="pages/",
    ),
    "basecamp": Source(
        name="basecamp",
        url="https://github.com/basecamp/handbook",
        commit="c9536061f26d0b5bd9f2f900d63e27e9f4deb4ed",
        mirror="/work/.mirror/basecamp+handbook/repo",
        prefixes=("",),
        strip_prefix="",
    ),
}

FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
LIQUID_COMMENT = re.compile(r"{%-?\s*comment\s*-?%}.*?{%-?\s*endcomment\s*-?%}", re.S)
LIQUID_RAW = re.compile(r"{%-?\s*raw\s*-?%}(.*?){%-?\s*endraw\s*-?%}", re.S)
LIQUID_TAG = re.compile(r"{%.*?%}|{{.*?}}", re.S)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
FENCE = re.compile(r"^\s*(```|~~~)")


def git(git_dir: str, *args: str) -> str:
    done = subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, check=False)
    if done.returncode:
        raise SystemExit(f"git {' '.join(args)} failed in {git_dir}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode("utf-8")


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """Top-level scalar keys of YAML front matter (enough for title/redirect_to), and the body after it."""
    match = FRONT_MATTER.match(text)
    if not match:
        return {}, text
    fields: dict[str, str] = {}
    key = None
    for line in match.group(1).splitlines():
        m = re.match(r"^([A-Za-z_][\w-]*):\s*(.*?)\s*$", line)
        if m:
            key = m.group(1)
            fields[key] = m.group(2)
        elif key and re.match(r"^\s+\S", line) and not line.strip().startswith("- "):
            fields[key] = f"{fields[key]} {line.strip()}".strip()  # folded (multi-line) plain scalar
        else:
            key = None
    for key, value in fields.items():
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            fields[key] = value[1:-1]
    return fields, text[match.end():]


def has_h1(body: str) -> bool:
    in_fence = False
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if re.match(r"^ {0,3}#[ \t]+\S", line) or re.match(r"^\s*<h1[\s>]", line, re.I):
            return True
        if line.strip() and i + 1 < len(lines) and re.match(r"^ {0,3}=+\s*$", lines[i + 1]):
            return True  # setext H1
    return False


def strip_liquid(body: str) -> str:
    body = LIQUID_COMMENT.sub("", body)
    raws: list[str] = []

    def keep_raw(m: re.Match) -> str:
        raws.append(m.group(1))
        return f"\x00RAW{len(raws) - 1}\x00"

    body = LIQUID_RAW.sub(keep_raw, body)
    body = LIQUID_TAG.sub("", body)
    body = HTML_COMMENT.sub("", body)
    return re.sub(r"\x00RAW(\d+)\x00", lambda m: raws[int(m.group(1))], body)


def convert(text: str) -> tuple[str | None, str]:
    """(markdown, reason) — markdown is None when the page is skipped."""
    fields, body = front_matter(text)
    if fields.get("redirect_to"):
        return None, "redirect"
    body = strip_liquid(body).strip("\n")
    title = fields.get("title", "").strip()
    if title and not has_h1(body):
        body = f"# {title}\n\n{body}"
    if not body.strip():
        return None, "empty"
    return body.rstrip() + "\n", ""


def selected(source: Source, path: str) -> bool:
    if not path.lower().endswith(".md"):
        return False
    for prefix in source.prefixes:
        if prefix == "" and "/" not in path:
            return True
        if prefix and path.startswith(prefix):
            return True
    return False


def materialize(source: Source, git_dir: str, commit: str, out: Path) -> dict:
    paths = [p for p in git(git_dir, "ls-tree", "-r", "--name-only", commit).splitlines() if selected(source, p)]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written, skipped = [], []
    for path in sorted(paths):
        markdown, reason = convert(git(git_dir, "show", f"{commit}:{path}"))
        if markdown is None:
            skipped.append((path, reason))
            continue
        name = path[len(source.strip_prefix):] if path.startswith(source.strip_prefix) else path
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(markdown, encoding="utf-8")
        written.append(name)
    return {"written": written, "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", choices=[*SOURCES, "all"])
    parser.add_argument("--git-dir", help="local clone or bare git directory of the source repository "
                                          "(default: the /work/.mirror copy); only with one corpus")
    parser.add_argument("--commit", help="override the pinned commit (the questions are written against the pin)")
    parser.add_argument("--out", type=Path, default=HERE / "build", help="parent folder (default %(default)s)")
    args = parser.parse_args(argv)
    names = list(SOURCES) if args.corpus == "all" else [args.corpus]
    if args.corpus == "all" and (args.git_dir or args.commit):
        parser.error("--git-dir and --commit apply to a single corpus")
    for name in names:
        source = SOURCES[name]
        git_dir = args.git_dir or source.mirror
        if Path(git_dir, ".git").exists():
            git_dir = str(Path(git_dir, ".git"))
        if not Path(git_dir).exists():
            print(f"{name}: no git directory at {git_dir}; clone {source.url} and pass --git-dir", file=sys.stderr)
            return 2
        commit = args.commit or source.commit
        result = materialize(source, git_dir, commit, args.out / name)
        print(f"{name}: {len(result['written'])} pages from {source.url} at {commit[:12]} -> {args.out / name}"
              f" ({len(result['skipped'])} skipped: {', '.join(p for p, _ in result['skipped']) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
