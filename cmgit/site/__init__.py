"""The published site: reference pages from the workflow and schemas, statistics from open
fields and history, and the MkDocs-Material build that turns them and the SOP pages into
static HTML.

A site build can never decrypt: this package reads the committed tree and the history with
git alone and imports nothing that handles keys. Everything it publishes comes from the
workflow data, the schemas and ``cmgit.stats`` (suppressed tables); the SOP pages come
from ``site/``. Before anything reaches the output folder the built files are checked:
only allow-listed file types are kept, and a record file, an age message or anything
shaped like a case record fails the whole build, which then publishes nothing.

One job per module:

- ``source``: the committed configuration and cases, read with git alone;
- ``statistics``: the figures of a commit (`cmgit stats`) and the statistics page;
- ``reference``: the reference pages on states, transitions, guards and forms;
- ``charts``: bar charts and the state diagram, as inline SVG;
- ``markup``: escaping and Markdown tables for the pages and charts;
- ``provenance``: each page's last change (day, staff ID), from one walk of git's history;
- ``publish``: the build, MkDocs included, and the move of a checked build into place;
- ``scan``: the check of the built output, the last step before anything is published.
"""

from __future__ import annotations

from .publish import GENERATED_PAGES, BuildResult, build
from .reference import reference_pages
from .scan import ALLOWED_TYPES, EXAMPLE_CASE_ID, UnsafeOutput, check_output
from .source import Source, open_source
from .statistics import Report, report, statistics_page, statistics_report

__all__ = [
    "ALLOWED_TYPES",
    "EXAMPLE_CASE_ID",
    "GENERATED_PAGES",
    "BuildResult",
    "Report",
    "Source",
    "UnsafeOutput",
    "build",
    "check_output",
    "open_source",
    "reference_pages",
    "report",
    "statistics_page",
    "statistics_report",
]
