"""Every relative link in the documentation leads to a file of the repository, and every
`#anchor` to a heading of that file."""

import os
import re
import subprocess

import pytest

from tests.common import REPO_ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files():
    out = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return [p for p in out.stdout.split() if os.path.isfile(os.path.join(REPO_ROOT, p))]


def _anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    with open(path, encoding="utf-8") as f:
        headings = [ln.lstrip("#").strip() for ln in f if re.match(r"#{1,6} ", ln)]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_the_docs_are_found():
    files = _markdown_files()
    assert {"README.md", "GETTING_STARTED.md", "docs/training.md"} <= set(files)


@pytest.mark.parametrize("name", _markdown_files())
def test_relative_links_resolve(name):
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # code blocks hold no links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(name), path)) if path else name
        full = os.path.join(REPO_ROOT, resolved)
        if not os.path.exists(full):
            broken.append(f"{target} (no file {resolved})")
        elif anchor and (not full.endswith(".md") or anchor not in _anchors(full)):
            broken.append(f"{target} (no heading #{anchor} in {resolved})")
    assert broken == []


PATH_IN_CODE = re.compile(
    r"`((?:tests|tools|configs|maskformer|datasets|demo)/[\w./-]+\.(?:py|yaml|sh))"
)


@pytest.mark.parametrize("name", _markdown_files())
def test_files_named_in_the_docs_exist(name):
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
        named = set(PATH_IN_CODE.findall(f.read()))
    assert [p for p in sorted(named) if not os.path.exists(os.path.join(REPO_ROOT, p))] == []
