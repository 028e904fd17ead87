"""Checks on the hand-written SOP pages under site/ and on mkdocs.yml.

1. Fresh text: no page shares a run of 8 or more consecutive words with the source
   documents the procedure was drawn from.
2. Every step page has the same eight template headings, in order.
3. Every link to another .md page resolves to a page that exists, or to one of the
   pages the site build generates.
4. No page holds anything shaped like a case ID except the documented example, and no
   test canary.
5. mkdocs.yml parses with yaml.safe_load and its nav lists every page under site/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cmgit.site.publish import check_mkdocs_config
from cmgit.site.source import check_site_file

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
MKDOCS = ROOT / "mkdocs.yml"

# Read at import time: the suite's autouse fixture removes every CMGIT_* variable from
# the environment before each test runs.
SEEDS_ENV = os.environ.get("CMGIT_SEEDS_DIR")

NGRAM = 8

# Pages that `cmgit site build` writes later from the workflow and schema data. They may
# be linked to and must be in the nav, but are not in the checkout.
GENERATED = frozenset(
    {
        "reference/index.md",
        "reference/states.md",
        "reference/transitions.md",
        "reference/guards.md",
        "reference/forms.md",
        "reference/providers.md",
        "statistics/index.md",
        "statistics/monthly.md",
    }
)

STEP_HEADINGS = [
    "Purpose",
    "When",
    "Who",
    "Steps",
    "Forms",
    "What the tool enforces",
    "Timing",
    "Principles to watch",
]

EXAMPLE_CASE_ID = "CP-7K2M9QX4"
# Anything shaped like a case number: the real format (prefix + 8 base-32 characters,
# checked loosely here) and the year-and-serial format older paper systems use.
CASE_ID_LIKE = re.compile(r"\b[A-Z]{2,5}-(?:[0-9A-Z]{8}|[0-9]{4}-[0-9]{3,6})\b")


def pages() -> list[Path]:
    return sorted(SITE.rglob("*.md"))


def page_name(path: Path) -> str:
    return path.relative_to(SITE).as_posix()


def without_code_blocks(text: str) -> Iterator[str]:
    """The lines of a Markdown page outside fenced code blocks."""
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is None and (stripped.startswith("```") or stripped.startswith("~~~")):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        yield line


# --- 1. fresh text ---------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lower-cased words; whitespace, punctuation and markup collapse to one separator."""
    return _WORD.findall(text.lower())


def seeds_dir() -> Path | None:
    candidates = []
    if SEEDS_ENV:
        candidates.append(Path(SEEDS_ENV))
    # The shared folder beside the repository's top folder.
    candidates.append(ROOT.parent / "shared" / "seeds")
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.txt")):
            return candidate
    return None


def test_there_are_pages() -> None:
    names = {page_name(p) for p in pages()}
    assert "index.md" in names
    assert any(name.startswith("sop/step-") for name in names)


def test_no_long_run_of_words_from_the_seeds() -> None:
    folder = seeds_dir()
    if folder is None:
        pytest.skip(
            "seed documents not found: set CMGIT_SEEDS_DIR or place them in shared/seeds "
            "beside the repository folder"
        )
    seed_grams: set[tuple[str, ...]] = set()
    squashed_parts: list[str] = []
    for seed in sorted(folder.glob("*.txt")):
        seed_words = words(seed.read_text(encoding="utf-8", errors="replace"))
        seed_grams.update(
            tuple(seed_words[i : i + NGRAM]) for i in range(len(seed_words) - NGRAM + 1)
        )
        # One seed is a PDF transcription in which spaces between words are often lost
        # ("the childand their family"); compare the same text with no separators too.
        squashed_parts.append("".join(seed_words))
    squashed = "|".join(squashed_parts)

    found: list[str] = []
    for path in pages():
        page_words = words(path.read_text(encoding="utf-8"))
        for i in range(len(page_words) - NGRAM + 1):
            gram = tuple(page_words[i : i + NGRAM])
            if gram in seed_grams or "".join(gram) in squashed:
                found.append(f"{page_name(path)}: {' '.join(gram)}")
    assert not found, "text shared with the seed documents:\n" + "\n".join(found)


# --- 2. step template -----------------------------------------------------------------


def step_pages() -> list[Path]:
    return sorted((SITE / "sop").glob("step-*.md"))


def test_there_are_eight_step_pages() -> None:
    assert len(step_pages()) == 8


@pytest.mark.parametrize("path", step_pages(), ids=page_name)
def test_step_page_has_the_template_headings(path: Path) -> None:
    headings = [
        line[3:].strip()
        for line in without_code_blocks(path.read_text(encoding="utf-8"))
        if line.startswith("## ")
    ]
    assert headings == STEP_HEADINGS


@pytest.mark.parametrize("path", step_pages(), ids=page_name)
def test_step_page_links_to_the_generated_reference(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../reference/transitions.md" in text
    assert "../reference/forms.md" in text


# --- 3. links -------------------------------------------------------------------------

# Inline links and images [text](target "title") and reference definitions [id]: target
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)


def md_links(text: str) -> list[str]:
    body = "\n".join(without_code_blocks(text))
    targets = _INLINE_LINK.findall(body) + _REF_DEF.findall(body)
    result = []
    for target in targets:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # external (http:, mailto:) or an anchor on the same page
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path.endswith(".md"):
            result.append(path)
    return result


def resolve(page: Path, target: str) -> str | None:
    """The target as a path relative to site/, or None if it leaves the site folder."""
    base = page.parent.relative_to(SITE).as_posix()
    parts: list[str] = [] if base == "." else base.split("/")
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def test_links_between_pages_resolve() -> None:
    existing = {page_name(p) for p in pages()}
    broken = []
    checked = 0
    for path in pages():
        for target in md_links(path.read_text(encoding="utf-8")):
            checked += 1
            name = resolve(path, target)
            if name is None or (name not in existing and name not in GENERATED):
                broken.append(f"{page_name(path)} -> {target}")
    assert checked > 0
    assert not broken, "links to pages that do not exist:\n" + "\n".join(broken)


# --- 4. no case data ------------------------------------------------------------------


@pytest.mark.parametrize("path", pages(), ids=page_name)
def test_no_case_ids_and_no_canary(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    others = sorted(set(CASE_ID_LIKE.findall(text)) - {EXAMPLE_CASE_ID})
    assert not others, f"strings that look like case IDs: {others}"
    assert "canary" not in text.lower()


def test_mkdocs_yml_has_no_case_ids_and_no_canary() -> None:
    text = MKDOCS.read_text(encoding="utf-8")
    assert not set(CASE_ID_LIKE.findall(text)) - {EXAMPLE_CASE_ID}
    assert "canary" not in text.lower()


# --- 5. mkdocs.yml --------------------------------------------------------------------


def nav_pages(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from nav_pages(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from nav_pages(value)


def load_mkdocs() -> dict[str, object]:
    config = yaml.safe_load(MKDOCS.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def test_mkdocs_yml_settings() -> None:
    config = load_mkdocs()
    assert config["docs_dir"] == "site"
    site_dir = Path(str(config["site_dir"]))
    assert not site_dir.is_absolute() and site_dir.parts[0] != "site"
    assert config["use_directory_urls"] is False
    theme = config["theme"]
    assert isinstance(theme, dict)
    assert theme["name"] == "material"
    assert theme["font"] is False  # no web font fetched: the site must work offline
    assert config["plugins"] == ["search"]


def test_nav_lists_every_page_and_only_known_pages() -> None:
    listed = list(nav_pages(load_mkdocs()["nav"]))
    assert len(listed) == len(set(listed)), "a page is listed twice in the nav"
    existing = {page_name(p) for p in pages()}
    missing = sorted(existing - set(listed))
    assert not missing, f"pages not in the nav: {missing}"
    unknown = sorted(set(listed) - existing - GENERATED)
    assert not unknown, f"nav entries with no page: {unknown}"
    assert set(listed) >= GENERATED, "a generated page is missing from the nav"


def test_the_shipped_sources_pass_the_build_checks() -> None:
    """The template's mkdocs.yml and site/ pass the checks the build applies to every
    file it reads from a commit."""
    check_mkdocs_config(MKDOCS.read_bytes())
    for path in sorted(SITE.rglob("*")):
        assert not path.is_symlink(), path
        if path.is_file():
            check_site_file(path.relative_to(ROOT).as_posix(), path.read_bytes())
