"""The service directory page: the providers of providers.yaml as committed, with the
services each offers and whether an information-sharing agreement is in force. It holds
no personal data and needs no key: the directory is about agencies, never children."""

from __future__ import annotations

from .. import packages
from ..config import MAX_CONFIG_BYTES, PROVIDERS_FILE, load_yaml
from ..errors import CmgitError
from ..schema import PROVIDERS
from .markup import code, esc, md_cell, md_table
from .source import Source

DIRECTORY_PAGE = "reference/providers.md"


def directory_page(source: Source) -> str:
    lines = [
        "# Service directory",
        "",
        "The agencies this programme refers children to or transfers cases to "
        f"({code(PROVIDERS_FILE)} of commit {code(source.head)}; a programme manager "
        "changes it with `cmgit config commit`). A referral or transfer package goes only "
        "to a provider listed here with an information-sharing agreement in force on the "
        f"day (guard [{packages.PROVIDER_GUARD}](guards.md)).",
        "",
    ]
    try:
        providers = _read(source)
    except CmgitError:
        return "\n".join([*lines, f"{code(PROVIDERS_FILE)} does not match its schema.", ""])
    if not providers:
        return "\n".join([*lines, "No provider is listed yet.", ""])
    rows = [
        [
            code(p.code),
            md_cell(p.name),
            md_cell(p.area),
            ", ".join(esc(s) for s in p.services),
            _agreement(p),
            "yes" if p.recipient and p.agreement_in_force else "no",
        ]
        for p in sorted(providers.values(), key=lambda p: p.code)
    ]
    headers = ["Code", "Provider", "Area", "Services", "Agreement", "Takes packages"]
    return "\n".join([*lines, md_table(headers, rows), ""])


def _agreement(provider: packages.Provider) -> str:
    # Said without today's date, so that a page is the same whenever its commit is built.
    if not provider.agreement_in_force:
        return "none"
    if provider.agreement_until is None:
        return "in force"
    return f"in force until {provider.agreement_until.isoformat()}"


def _read(source: Source) -> dict[str, packages.Provider]:
    data = source.git.read_paths(source.head, [PROVIDERS_FILE]).get(PROVIDERS_FILE)
    schema = source.schemas.schemas.get(PROVIDERS)
    if data is None or schema is None:
        return {}
    doc = load_yaml(data, source.schemas, schema, what=PROVIDERS_FILE, limit=MAX_CONFIG_BYTES)
    source.schemas.validate(doc, PROVIDERS, what=PROVIDERS_FILE)
    return packages.directory(doc)
