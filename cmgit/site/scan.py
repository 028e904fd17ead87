"""The output scan: the last check between a built site and its publication.

Every built file is read: a record file, an age message, a line shaped like a case
record, a case number, a file that is not a regular file or a page that would fetch
something from the web fails the whole build, which then publishes nothing. File types
that are not allow-listed are removed. The scan knows nothing of how the site was built:
it reads bytes, so it can be reviewed alone.
"""

from __future__ import annotations

import contextlib
import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidRecord

# What may be published, by file name ending; everything else is removed from the output.
ALLOWED_TYPES = frozenset(
    {"html", "css", "js", "json", "svg", "png", "ico", "woff2", "xml", "txt", "map", "gz"}
)
# The case number the SOP pages use as their example (SPEC section 1).
EXAMPLE_CASE_ID = "CP-7K2M9QX4"
_CASE_ID_BYTES = re.compile(rb"[A-Z]{2,5}-[0-9A-HJKMNP-TV-Z]{8}")
_RECORD_LINE = re.compile(rb"(?m)^[ \t]*case_id:")
_AGE_MARKERS = (b"BEGIN AGE ENCRYPTED FILE", b"age-encryption.org")
_REMOTE = r"""["']?\s*(?:https?:)?//"""
# What a browser fetches by itself when a page is viewed: scripts, styles, fonts, images,
# frames. Links a reader may follow (<a href>, rel="canonical") fetch nothing.
_FETCHING_TAG = re.compile(
    r"<(?:script|img|iframe|frame|source|embed|video|audio|track|input)\b[^>]*\s(?:src|srcset|poster)"
    r"\s*=\s*" + _REMOTE + r"|<object\b[^>]*\sdata\s*=\s*" + _REMOTE,
    re.IGNORECASE,
)
_LINK_TAG = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_LINK_FOLLOWED = re.compile(
    r"""\srel\s*=\s*["']?(?:canonical|alternate|next|prev|author|license|help|me)\b""",
    re.IGNORECASE,
)
_LINK_REMOTE = re.compile(r"\shref\s*=\s*" + _REMOTE, re.IGNORECASE)
_CSS_REMOTE = re.compile(r"url\(\s*" + _REMOTE + r"|@import\s+" + _REMOTE, re.IGNORECASE)


def fetches_from_the_web(text: str) -> bool:
    """Whether an HTML page or a stylesheet makes the browser fetch something remote."""
    if _FETCHING_TAG.search(text) or _CSS_REMOTE.search(text):
        return True
    return any(
        _LINK_REMOTE.search(tag) and not _LINK_FOLLOWED.search(tag)
        for tag in _LINK_TAG.findall(text)
    )


class UnsafeOutput(InvalidRecord):
    """The built site holds something that must never be published (exit 3)."""


@dataclass
class Finding:
    path: str
    problem: str


def scan_file(rel: str, data: bytes, case_ids: set[str]) -> list[str]:
    """What in one built file must never be published."""
    problems = []
    if rel.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            problems.append("a compressed file that cannot be read")
    name = rel.rsplit("/", 1)[-1]
    allowed = {EXAMPLE_CASE_ID} - case_ids
    if _CASE_ID_BYTES.search(name.encode("utf-8", "replace")):
        problems.append("a file named like a case record")
    if any(marker in data for marker in _AGE_MARKERS):
        problems.append("an age-encrypted message")
    if _RECORD_LINE.search(data):
        problems.append("a line shaped like a case record (case_id:)")
    shaped = {m.decode("ascii") for m in _CASE_ID_BYTES.findall(data)} - allowed
    if shaped:
        problems.append("text shaped like a case number")
    return problems


def check_output(site_dir: Path, case_ids: set[str]) -> int:
    """Check every built file; fail if any must not be published, else drop the file types
    that are not allow-listed. Returns how many files were dropped."""
    findings: list[Finding] = []
    drop = []
    for path in sorted(site_dir.rglob("*")):
        rel = path.relative_to(site_dir).as_posix()
        if path.is_symlink() or (not path.is_file() and not path.is_dir()):
            findings.append(Finding(rel, "not a regular file"))
            continue
        if path.is_dir():
            continue
        data = path.read_bytes()
        findings += [Finding(rel, p) for p in scan_file(rel, data, case_ids)]
        suffix = path.name.rsplit(".", 1)[-1].lower() if "." in path.name else ""
        if suffix not in ALLOWED_TYPES:
            drop.append(path)
        elif suffix in ("html", "css") and fetches_from_the_web(data.decode("utf-8", "replace")):
            findings.append(Finding(rel, "loads a script, style, font or image from the web"))
    if findings:
        raise _unsafe("the built site holds", findings)
    for path in drop:
        path.unlink()
    for folder in sorted((p for p in site_dir.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only empty ones go
    return len(drop)


def printable_path(rel: str) -> str:
    """A path as messages show it: a file name could be anything, so only plain
    characters are kept, and only so many."""
    return re.sub(r"[^A-Za-z0-9._/-]", "?", rel)[:120]


def check_front_matter(docs: Path, case_ids: set[str]) -> None:
    """Refuse pages whose meta-data holds what must never be published. MkDocs reads the
    lines at the top of a page (a block between ``---`` lines, or ``key: value`` lines up
    to the first blank one) as the page's meta-data and leaves them out of the output, so
    a record pasted at the top of a page would pass the output scan unseen."""
    findings = []
    for path in sorted(docs.rglob("*")):
        if path.suffix.lower() in (".md", ".markdown") and path.is_file():
            rel = path.relative_to(docs).as_posix()
            head = front_matter(path.read_bytes())
            findings += [Finding(rel, p) for p in scan_file(rel, head, case_ids)]
    if findings:
        raise _unsafe("the site's page meta-data holds", findings)


def front_matter(page: bytes) -> bytes:
    """The lines at the top of a page that MkDocs may read as its meta-data."""
    lines = page.splitlines(keepends=True)
    if lines and lines[0].rstrip() == b"---":
        ends = [n for n, line in enumerate(lines[1:], 1) if line.rstrip() in (b"---", b"...")]
        return b"".join(lines[1 : ends[0]]) if ends else b""
    head = []
    for line in lines:
        if not line.strip():
            break
        head.append(line)
    return b"".join(head)


def _unsafe(where: str, findings: list[Finding]) -> UnsafeOutput:
    shown = [f"{printable_path(f.path)}: {f.problem}" for f in findings[:10]]
    if len(findings) > 10:
        shown.append(f"... and {len(findings) - 10} more")
    return UnsafeOutput(
        f"{where} what must never be published; nothing was published",
        problems=shown,
        hint="remove the files named from site/ (a copy of a record or of an encrypted "
        "block has no place there) and build again",
    )
