"""The README and the docs say what the code does: their code runs or parses, the commands, recipes and model names
they mention exist, and the generated model tables match the registry and the manifest.

The strict site build (``mkdocs build --strict``: broken links, missing API references) runs in scripts/test.sh.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [README, *DOCS]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(path: Path, lang: str) -> list[str]:
    return [body for kind, body in _FENCE.findall(path.read_text()) if kind == lang]


def _prose(path: Path) -> str:
    """The page without its fenced blocks."""
    return _FENCE.sub("", path.read_text())


def _expand(pattern: str) -> list[str]:
    """Shell-style brace expansion (``a_{b,c}{,_d}`` -> 4 names); ``{word}`` without a comma is a placeholder."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    options = match[1].split(",") if "," in match[1] else ["*"]
    return [x for opt in options for x in _expand(pattern[: match.start()] + opt + pattern[match.end() :])]


def test_docs_exist_and_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert len(DOCS) >= 12
    for page in DOCS:
        rel = page.relative_to(ROOT / "docs").as_posix()
        assert rel in nav, f"docs/{rel} is not in mkdocs.yml's nav"


def test_readme_fits_on_two_screens_and_links_the_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for page in ("docs/getting-started.md", "docs/models.md", "docs/training.md", "docs/hub.md", "docs/norms.md"):
        assert f"]({page})" in text
    for link in re.findall(r"\]\(((?!https?:)[^)#]+)", text):  # every relative link resolves in the repository
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_parse(page):
    for block in _blocks(page, "python"):
        ast.parse(block, filename=str(page))


@pytest.mark.slow
def test_readme_python_blocks_run(monkeypatch, tmp_path):
    # The README's example is what a newcomer pastes first: it must run as written, offline.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    blocks = _blocks(README, "python")
    assert blocks and "pretrained=True" in blocks[0]
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # our own README, run as a newcomer would
    assert tuple(namespace["logits"].shape) == (1, 10)


def test_commands_in_the_docs_exist():
    from derf_zoo.cli import _own_parser

    commands = set(_own_parser()._subparsers._group_actions[0].choices)
    for page in PAGES:
        code = "\n".join(_blocks(page, "bash")) + "\n".join(
            re.findall(r"`([^`\n]+)`", _prose(page)))  # fmt: skip
        for word in re.findall(r"derf-zoo ([a-z][\w-]*)", code):
            assert word in commands, f"{page.name} mentions `derf-zoo {word}`, which is not a command"


def test_recipes_in_the_docs_exist():
    recipes = ROOT / "derf_zoo"
    for page in PAGES:
        for pattern in set(re.findall(r"recipes/[\w/{},.*-]+?\.yaml", page.read_text())):
            for path in _expand(pattern):
                assert list(recipes.glob(path)), f"{page.name} names {path}, which is not a recipe"


def test_model_names_in_the_docs_exist():
    from derf_zoo.hub import released_weights
    from derf_zoo.models import list_families, list_models

    architectures = list_models()
    weights = [w.name for w in released_weights()]
    families = tuple(f"{family}_" for family in list_families())
    checked = 0
    for page in PAGES:
        for span in set(re.findall(r"`([a-z][\w{},*]*(?:\.[\w{},*]+)?)`", _prose(page))):
            if not span.startswith(families) or span.endswith(".yaml"):
                continue
            for name in _expand(span):
                known = weights if "." in name else architectures
                assert fnmatch.filter(known, name), f"{page.name} names `{name}`, which is not registered"
                checked += 1
    assert checked > 40


@pytest.mark.slow
def test_generated_model_tables_match_the_registry_and_manifest():
    from derf_zoo.models._table import update_files

    stale = update_files(DOCS, check=True)
    assert not stale, (f"{[p.name for p in stale]} disagree with the registry/manifest; run "
                       "`derf-zoo models --update docs/models.md docs/families/*.md`")  # fmt: skip


def test_every_family_has_a_page_with_its_generated_table():
    from derf_zoo.models import list_families

    text = "".join(page.read_text() for page in DOCS)
    assert "<!-- derf-zoo models --markdown --cards cards -->" in (ROOT / "docs" / "models.md").read_text()
    for family in list_families():
        assert f"--family {family} " in text, f"no docs page shows the {family} family's generated table"
