"""The architecture, checked: layers import downward only, one adapter per library."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cmgit"

LAYERS: dict[str, float] = {
    "errors": 0,
    "faults": 0,  # test-only failpoints for crash injection
    "ids": 1,
    "records": 1,
    "guards": 1,
    "registry": 1,
    "yamlio": 1,
    "stats": 1,  # suppressed tables from open fields and history
    "workflow": 1.5,  # the procedure model, built on the named guards
    "schema": 2,
    "crypto": 2,
    "history": 2,
    "template": 2,
    "progress": 2,
    "signing": 2,
    "pool": 2,  # work on every core, forked
    "config": 2.5,  # the committed configuration, read without any key
    "caches": 2.4,  # keyless reads remembered by object id
    "store": 3,
    "editing": 3,
    "site": 3,  # reads git directly: never the store, never a key
    "demo": 3.5,  # a programme built through the store, as a user would
    "audit": 3,  # replays history against the configuration of each commit
    "hooks": 3.7,  # the server hook runs the audit
    "sync": 3.5,  # replays commits through the store
    "merge": 1,
    "cli": 4,
}
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


def imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules == set(LAYERS)


def test_layers_import_downward_only() -> None:
    for module, layer in LAYERS.items():
        for name in imports(module) & set(LAYERS):
            assert LAYERS[name] < layer or (name == module), f"{module} imports {name}"


def test_libraries_have_one_adapter_each() -> None:
    for module in LAYERS:
        for library in imports(module) & set(OWNERS):
            assert module in OWNERS[library], f"{module} imports {library}"


def test_pure_layer_touches_no_files_clock_or_processes() -> None:
    for module, layer in LAYERS.items():
        if layer == 1:
            assert not imports(module) & PURE_FORBIDDEN, module
            assert "today()" not in (PACKAGE / f"{module}.py").read_text(), module
