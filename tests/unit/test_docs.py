"""The docs stay honest: their links resolve inside the repository, nothing points outside
it, the paths and modules they name exist, and the configuration reference names every
setting the code has.

Checked: README.md, docs/*.md and benchmarks/results/*.md. A relative link must name an
existing file (or folder); a `#fragment` must be a heading of the target page (GitHub's
anchor rules: lower case, punctuation dropped, spaces to hyphens, `-1`, `-2` for repeats).
Links to `../shared` or to anything above the repository are refused, and so are web
links other than those of the project's own examples, so a clone needs nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks/results").glob("*.md")]
)
# [text](target) outside code; images too. Reference-style links are not used here.
_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line without inline code) for every line outside fenced code."""
    out: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, _INLINE_CODE.sub("", line)))
    return out


def links(page: Path) -> list[tuple[int, str]]:
    return [
        (number, match["target"])
        for number, line in prose_lines(page.read_text(encoding="utf-8"))
        for match in _LINK.finditer(line)
    ]


def slug(title: str) -> str:
    """GitHub's heading anchor: markup dropped, lower case, punctuation out, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match["title"])
            seen = counts.get(base, 0)
            counts[base] = seen + 1
            found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def test_the_pages_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/api.md", "docs/architecture.md", "docs/configuration.md"} <= names
    assert sum(len(links(p)) for p in PAGES) > 50


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_stays_in_the_repository_and_resolves(page: Path) -> None:
    problems: list[str] = []
    for number, target in links(page):
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if "../shared" in target or "/shared/design" in target:
            problems.append(f"{where}: outside the repository")
            continue
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:, file: ...
            problems.append(f"{where}: leaves the repository")
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if ROOT not in resolved.parents and resolved != ROOT:
            problems.append(f"{where}: above the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where}: no such file")
            continue
        if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{where}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    assert problems == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_needs_a_document_outside_the_repository(page: Path) -> None:
    """No path to the design inputs, and not "the seed" (the outside document the platform
    was designed from): a page says "the reference AWS architecture", which
    docs/architecture.md defines, or states the numbers."""
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert re.findall(r"\bthe seed(?:'s)?\b", text, flags=re.IGNORECASE) == []


# A path of the repository in backticks (`app/services/consume.py`), and a module run with
# `python -m` (`benchmarks.e2e.freshness`); patterns with braces or globs are skipped.
_PATH = re.compile(
    r"`((?:app|ops|alarms|dashboards|benchmarks|loadtests|infra|scripts|tests)/[\w./-]+)`"
)
_MODULE = re.compile(r"-m ((?:app|ops|alarms|dashboards|benchmarks|loadtests)(?:\.\w+)+)")


def named_paths(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    paths = [m[1].rstrip(".") for m in _PATH.finditer(text)]
    modules = [m[1].replace(".", "/") for m in _MODULE.finditer(text)]
    return paths + [m if (ROOT / m).is_dir() else f"{m}.py" for m in modules]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_path_and_module_a_page_names_exists(page: Path) -> None:
    assert [p for p in named_paths(page) if not (ROOT / p).exists()] == []


def test_the_configuration_reference_names_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [
        f"QIS_{section.name.upper()}__{field.name.upper()}"
        for section in msgspec.structs.fields(Settings)
        for field in msgspec.structs.fields(section.type)
        if f"QIS_{section.name.upper()}__{field.name.upper()}" not in text
    ]
    assert missing == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A `code` heading, too\n\n"
        "[ok](#title) [ok too](#a-code-heading-too) [bad](#nowhere)\n"
        "`[not a link](nowhere.md)`\n```\n[inside a fence](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert [t for _, t in links(page)] == ["#title", "#a-code-heading-too", "#nowhere"]
    assert anchors(page) == {"title", "a-code-heading-too"}
    assert slug("3. Sizing: `qis sizing` and `benchmarks/sizing/`") == (
        "3-sizing-qis-sizing-and-benchmarkssizing"
    )
    page.write_text("`app/nowhere.py` and `python -m benchmarks.e2e.nothing`\n", encoding="utf-8")
    assert named_paths(page) == ["app/nowhere.py", "benchmarks/e2e/nothing.py"]
