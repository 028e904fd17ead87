"""The architecture, checked: tiers import downward only, one adapter per library.

A unit is a top-level module of cmgit or one of its packages (store/, site/), taken whole.
A unit may import units of lower tiers, and units of its own tier as long as no cycle
forms; nothing imports the command line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cmgit"

# The tiers, lowest first, and the units in each.
TIERS: dict[str, set[str]] = {
    # The CmgitError hierarchy and exit codes; the test-only failpoints for crash injection.
    "foundation": {"errors", "faults"},
    # Pure domain: values in, values out; no files, clock, environment or processes.
    "domain": {
        "ids",
        "events",  # the one shape of event commits: kinds, IDs, trailers, files changed
        "yamlio",
        "records",
        "entries",  # format 2: the open file, sealed entries' paths, plaintext and deltas
        "guards",
        "registry",
        "workflow",
        "stats",
        "merge",
        "formtemplate",  # the forms people write, and a template of each
        "personal_text",  # names, places and contacts found in free text
        "migrations",  # records brought along when the forms change
        "packages",  # referral and transfer packages: sections, format, receipt code
        "reports",  # the monthly report's tables, from values
        "trail",  # the decisions a transition commit records
        "exchange",  # cases in and out as CSV: import maps, rows, export cells
        "retention",  # the closed cases past their retention period
        "privacy",  # single-out risk of the open fields; open dates kept to the month
    },
    # One outside thing each (age, git, JSON Schema, the terminal, the template files,
    # SSH signatures, forked workers), and the keyless reads built on git alone.
    "adapters": {
        "schema",
        "crypto",
        "history",
        "template",
        "progress",
        "signing",
        "pool",
        "config",  # the committed configuration, read without any key
        "caches",  # keyless reads remembered by object id
        "keyring",  # per-case keys: wrapped to readers and custodians, kept in shard refs
    },
    # Orchestration: one unit of work per command. The site reads git directly, never the
    # store or a key; the demo, sync and hooks work through the store and the audit.
    "orchestration": {"store", "editing", "site", "audit", "sync", "hooks", "demo"},
    # The command line: the only unit that prints or exits.
    "interface": {"cli"},
}
TIER_OF = {unit: rank for rank, units in enumerate(TIERS.values()) for unit in units}
PURE = TIERS["domain"]

# Each outside library has one home (its adapter); everything else goes through it.
OWNERS = {
    "pyrage": {"crypto"},
    "jsonschema_rs": {"schema"},
    "yaml": {"yamlio"},
    "click": {"cli"},
    "rich": {"progress"},
    "subprocess": {"history", "editing"},
    "cryptography": {"signing"},
}
PURE_FORBIDDEN = {"os", "subprocess", "pathlib", "time", "tempfile", "shutil", "socket"}


def sources(unit: str) -> list[Path]:
    folder = PACKAGE / unit
    return sorted(folder.glob("*.py")) if folder.is_dir() else [PACKAGE / f"{unit}.py"]


def units() -> set[str]:
    found = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return found | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}


def imported_names(path: Path) -> Iterator[tuple[str, bool]]:
    """Each import of a file as (top-level name, whether it is inside cmgit), resolving
    relative imports from the file's own package."""
    inside = path.parent.relative_to(PACKAGE).parts  # () for a top-level module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "cmgit":
                    yield (parts[1] if len(parts) > 1 else "", True)
                else:
                    yield parts[0], False
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(inside[: len(inside) - (node.level - 1)])
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    yield parts[0], True
                else:  # `from . import x` at the top of cmgit (its __version__ is no unit)
                    yield from ((a.name, True) for a in node.names if a.name != "__version__")
            elif node.module:
                parts = node.module.split(".")
                if parts[0] == "cmgit":
                    yield (parts[1] if len(parts) > 1 else "", True)
                    if len(parts) == 1:
                        yield from ((alias.name, True) for alias in node.names)
                else:
                    yield parts[0], False


def unit_imports(unit: str) -> tuple[set[str], set[str]]:
    """What a unit imports: (other cmgit units, outside top-level names)."""
    ours: set[str] = set()
    outside: set[str] = set()
    for path in sources(unit):
        for name, is_ours in imported_names(path):
            (ours if is_ours else outside).add(name)
    return ours - {unit, ""}, outside


def test_every_unit_has_a_tier() -> None:
    assert units() == set(TIER_OF)


def test_tiers_import_downward_only() -> None:
    for unit, tier in TIER_OF.items():
        for name in unit_imports(unit)[0]:
            assert TIER_OF[name] <= tier, f"{unit} imports {name}"


def test_no_import_cycles() -> None:
    graph = {unit: unit_imports(unit)[0] for unit in TIER_OF}
    done: set[str] = set()

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, " -> ".join((*path, unit))
        if unit in done:
            return
        for name in graph[unit]:
            visit(name, (*path, unit))
        done.add(unit)

    for unit in graph:
        visit(unit, ())


def test_libraries_have_one_adapter_each() -> None:
    for unit in TIER_OF:
        for library in unit_imports(unit)[1] & set(OWNERS):
            assert unit in OWNERS[library], f"{unit} imports {library}"


def test_the_site_cannot_reach_a_key() -> None:
    assert not unit_imports("site")[0] & {"crypto", "store", "editing", "sync", "demo"}


def test_pure_tier_touches_no_files_clock_or_processes() -> None:
    for unit in PURE:
        assert not unit_imports(unit)[1] & PURE_FORBIDDEN, unit
        assert all("today()" not in path.read_text() for path in sources(unit)), unit


def test_the_import_reader_resolves_package_imports() -> None:
    # The checks above are only as good as this reader: in a package, "from .." lands on a
    # top-level unit and "from ." on the package itself.
    charts = PACKAGE / "site" / "charts.py"
    assert {name for name, ours in imported_names(charts) if ours} == {"stats", "workflow", "site"}
