"""MkDocs hooks (``mkdocs.yml: hooks``): the pages generated from the code, so the site never drifts from it.

- the model tables: every ``<!-- derf-zoo models ... -->`` region is filled from the registry and the manifest
  (``derf_zoo.models._table``; the tests check that the committed pages match too);
- ``cards/<name>.md``: the model card of every weight shipped in the package;
- ``results/<file>``: the benchmark reports and plots in ``benchmarks/results/``;
- ``api/<package>.md``: one page per public package, one entry per name in its ``__all__`` (each object is
  documented once, on the first page that lists it; later pages link there);
- ``changelog.md`` and ``contributing.md`` from the repository's files.

It also shows the docstrings' Sphinx roles (``:func:`name```) as plain code.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
#: Sphinx roles in docstrings (":func:`name`") arrive in the HTML as ":func:<code>name</code>".
_SPHINX_ROLE = re.compile(r":(?:func|class|meth|data|attr|mod|obj|exc):<code>(~?)([^<]*)</code>")

#: API pages in the order objects are claimed; the top-level package comes last (it re-exports).
API_PAGES = {
    "norms": "derf_zoo.norms",
    "layers": "derf_zoo.layers",
    "models": "derf_zoo.models",
    "tasks": "derf_zoo.tasks",
    "data": "derf_zoo.data",
    "callbacks": "derf_zoo.callbacks",
    "diffusion": "derf_zoo.diffusion",
    "hub": "derf_zoo.hub",
    "weights": "derf_zoo.weights",
    "benchmarking": "derf_zoo.benchmarking",
    "release": "derf_zoo.release",
    "index": "derf_zoo",
}


def on_files(files: Files, config) -> Files:
    from derf_zoo.hub import released_weights

    for weights in released_weights():
        folder = weights.embedded_path()
        if folder is not None:
            files.append(File.generated(config, f"cards/{weights.name}.md", abs_src_path=str(folder / "README.md")))
    for path in sorted((ROOT / "benchmarks" / "results").iterdir()):
        if path.suffix in (".md", ".png"):
            files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    for name, source in (("changelog.md", "CHANGELOG.md"), ("contributing.md", "CONTRIBUTING.md")):
        files.append(File.generated(config, name, abs_src_path=str(ROOT / source)))
    for page, text in api_pages().items():
        files.append(File.generated(config, f"api/{page}.md", content=text))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    from derf_zoo.models._table import BEGIN, fill_generated

    if BEGIN in markdown:
        return fill_generated(markdown, source=page.file.src_uri)
    return markdown


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings use Sphinx roles for names; show the name as code, as the prose around it does."""
    return _SPHINX_ROLE.sub(lambda m: f"<code>{m[2].rpartition('.')[2] if m[1] else m[2]}</code>", html)


def api_pages() -> dict[str, str]:
    """Markdown of every API page: ``::: path`` for the names a page owns, links for the rest."""
    owner: dict[str, str] = {}  # canonical path -> page that documents it
    pages = {}
    for page, package in API_PAGES.items():
        module = importlib.import_module(package)
        lines = [f"# `{package}`", "", f"::: {package}", "    options:", "      members: false",
                 "      show_root_heading: false", ""]  # fmt: skip
        elsewhere = []
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):  # a family module: its docstring, then its own public names
                lines += [f"::: {obj.__name__}", "    options:", "      members: false", "      heading_level: 2",
                          "      show_root_full_path: true", ""]  # fmt: skip
                for member in getattr(obj, "__all__", []):
                    lines += _entry(getattr(obj, member), f"{obj.__name__}.{member}", owner, page, elsewhere, 3)
            else:
                lines += _entry(obj, f"{package}.{name}", owner, page, elsewhere, 2)
        if elsewhere:
            lines += ["## Documented with their subpackage", "",
                      f"`{package}` also exports these names; each is documented once, where it is defined:", "",
                      *elsewhere, ""]  # fmt: skip
        pages[page] = "\n".join(lines)
    return pages


def _entry(obj, public: str, owner: dict[str, str], page: str, elsewhere: list[str], level: int) -> list[str]:
    path = _canonical(obj, public)
    if path in owner:
        elsewhere.append(f"- [`{public.rpartition('.')[2]}`][{path}] (documented under `{path}`)")
        return []
    owner[path] = page
    return [f"::: {path}", "    options:", f"      heading_level: {level}", ""]


def _canonical(obj, public: str) -> str:
    """Where griffe finds the object: its defining module (data's names load lazily, so not the package)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and module and qualname:
        return f"{module}.{qualname}"
    return public  # a constant: documented where it is exported
