"""Property tests of every parser of outside input (issue #7, deliverable 4).

Record files, forms given with --from, the staff registry and settings, sealed blocks,
identity files, commit trailers and case IDs. For each: any input either parses to a
value that round-trips or validates, or raises a CmgitError subclass (never another
exception, never a traceback), within a second, and never yields a silently changed
value (a mutated record that opens must be the record that was written).

The default run is brief; CMGIT_FUZZ_EXAMPLES raises the number of examples per
property for a long run (bench/fuzz.py does that).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmgit import config, crypto, history, ids, records, yamlio
from cmgit.errors import CmgitError, IntegrityError, TooLarge
from cmgit.registry import Registry
from cmgit.schema import SETTINGS, STAFF, SchemaSet
from cmgit.store import Repository

from ..conftest import CANARY, form
from ..conftest import STAFF as STAFF_ROWS

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = int(os.environ.get("CMGIT_FUZZ_EXAMPLES", "60"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=1000,  # the property's time bound: no input may take a second
    database=None,
    derandomize=EXAMPLES <= 200,  # the default run is the same every time
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@functools.cache
def schemas() -> SchemaSet:
    return SchemaSet.load(SCHEMAS)


@functools.cache
def keys() -> tuple[crypto.Identity, crypto.Identity]:
    """A recipient of the sample record and an outsider."""
    return tuple(
        crypto.parse_identity(crypto.generate_identity()[0])  # type: ignore[return-value]
        for _ in range(2)
    )


OPEN_FIELDS: dict[str, Any] = {
    "case_id": "CP-7K2M9QX4",
    "version": 3,
    "state": "assessment",
    "episode": 1,
    "team": "north",
    "caseworker": "cw-north-1",
    "identified_on": "2026-03-02",
    "registered_on": "2026-03-03",
    "state_since": "2026-03-04",
    "state_history": ["2026-03-02 identified", "2026-03-03 registered", "2026-03-04 assessment"],
    "next_follow_up_due": None,
    "next_review_due": None,
    "risk_level": "high",
    "immediate_risk": True,
    "separation_status": "unaccompanied",
    "sex": "female",
    "age_band": "12-14",
    "closure_reason": None,
    "closed_on": None,
    "comprehensive_assessment_required": False,
    "record_format": 2,
}


@functools.cache
def sample_record() -> tuple[bytes, bytes]:
    """A real record file (open fields and an age-sealed payload) and its plaintext."""
    owner, _ = keys()
    record = records.Record(dict(OPEN_FIELDS), form("identification", drop_id=False))
    plaintext = records.seal_payload(record, "0" * 40)
    armored = crypto.seal(plaintext, [owner.recipient])
    data = records.render_file(OPEN_FIELDS, schemas().open_fields, armored)
    return data, plaintext


def mutate(data: bytes, draw: Any) -> bytes:
    """One to four random edits: flip, insert, delete, truncate, duplicate a line."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "line"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del out[at:]
        else:
            lines = bytes(out).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            out = bytearray(b"\n".join(lines))
    return bytes(out)


@st.composite
def mutated(draw: Any, base: Any) -> bytes:
    """BASE() (a cached sample) after `mutate`."""
    return mutate(base(), draw)


def refuses_cleanly(exc: BaseException) -> None:
    assert isinstance(exc, CmgitError), f"{type(exc).__name__} escaped: {exc!r}"
    message = str(exc)
    assert CANARY not in message and "Traceback" not in message
    assert message.splitlines()[0].isprintable()


# -- record files ------------------------------------------------------------------------


def open_record(data: bytes, identities: tuple[crypto.Identity, ...]) -> records.Payload:
    """What `show` does with a record file's bytes: parse, inspect, open, bind."""
    order = schemas().open_fields
    open_fields, armored = records.parse_file(data, order)
    payload = records.parse_payload(crypto.open_sealed(armored, identities))
    records.check_binding(OPEN_FIELDS["case_id"], open_fields, payload)
    return payload


@FUZZ
@given(st.data())
def test_mutated_record_file_is_refused_or_unchanged(data: st.DataObject) -> None:
    original, plaintext = sample_record()
    mutated = mutate(original, data.draw)
    owner, _ = keys()
    try:
        payload = open_record(mutated, (owner,))
    except BaseException as exc:
        refuses_cleanly(exc)
        return
    # Whatever opens is exactly what was written: no silent change.
    assert mutated == original
    assert payload.forms == json.loads(plaintext)["forms"]


@FUZZ
@given(st.one_of(st.binary(max_size=2000), mutated(lambda: sample_record()[0])))
def test_record_parsers_round_trip_or_refuse(data: bytes) -> None:
    order = schemas().open_fields
    try:
        open_fields, armored = records.parse_file(data, order)
    except BaseException as exc:
        refuses_cleanly(exc)
    else:
        assert records.render_file(open_fields, order, armored) == data
    try:
        head = records.parse_open_fields(data, order)
    except BaseException as exc:
        refuses_cleanly(exc)
    else:
        assert list(head) == list(order)


@FUZZ
@given(st.one_of(st.binary(max_size=3000), mutated(lambda: sample_record()[1])))
def test_sealed_plaintext_parse_refuses_cleanly(data: bytes) -> None:
    try:
        payload = records.parse_payload(data)
    except BaseException as exc:
        refuses_cleanly(exc)
    else:
        assert isinstance(payload.forms, dict) and isinstance(payload.version, int)


# -- sealed blocks -------------------------------------------------------------------------


def sample_armored() -> str:
    return records.parse_file(sample_record()[0], schemas().open_fields)[1]


@FUZZ
@given(
    st.one_of(
        st.text(max_size=1500),
        mutated(lambda: sample_armored().encode()).map(lambda b: b.decode("latin-1")),
    )
)
def test_sealed_block_inspect_and_open(text: str) -> None:
    owner, outsider = keys()
    try:
        header = crypto.inspect(text)
    except BaseException as exc:
        refuses_cleanly(exc)
        return
    assert set(header.stanza_types) == {"X25519"}
    for who in ((owner,), (outsider,), (outsider, owner)):
        try:
            plain = crypto.open_sealed(text, who)
        except BaseException as exc:
            refuses_cleanly(exc)
        else:
            assert owner in who and plain == sample_record()[1]


def canonical_armor(text: str) -> bytes | None:
    """The definition the armor check must meet: the block is what its content encodes to."""
    begin, end = "-----BEGIN AGE ENCRYPTED FILE-----\n", "-----END AGE ENCRYPTED FILE-----\n"
    if not (text.startswith(begin) and text.endswith(end)):
        return None
    try:
        data = base64.b64decode(text[len(begin) : -len(end)].replace("\n", ""), validate=True)
    except ValueError:
        return None
    return data if data and crypto._armor(data) == text else None


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300),
        mutated(lambda: sample_armored().encode()).map(lambda b: b.decode("latin-1")),
    )
)
def test_the_armor_check_is_its_definition(text: str) -> None:
    try:
        found: bytes | None = crypto._dearmor_canonical(text)
    except IntegrityError:
        found = None
    assert found == canonical_armor(text)


@FUZZ
@given(st.data())
def test_the_x25519_header_shortcut_agrees_with_the_parser(data: st.DataObject) -> None:
    binary = mutate(crypto._dearmor_canonical(sample_armored()), data.draw)
    try:
        whole = [s.tag for s in crypto._parse_header(binary)[0]]
    except crypto.HeaderFailure:
        whole = None
    try:
        leading, rest = crypto._header_stanzas(binary)
        found: list[str] | None = ["X25519"] * leading + [s.tag for s in rest]
    except crypto.HeaderFailure:
        found = None
    assert found == whole


@FUZZ
@given(st.data())
def test_any_age_message_through_the_adapter(data: st.DataObject) -> None:
    binary = crypto._dearmor_canonical(sample_armored())
    mutated = mutate(binary, data.draw)
    owner, _ = keys()
    try:
        plain = crypto.decrypt_message(mutated, [owner], armored=False)
    except BaseException as exc:
        refuses_cleanly(exc)
    else:
        assert plain == sample_record()[1]


# -- forms given with --from -----------------------------------------------------------


FORM_NAMES = ("identification", "registration", "consent", "note", "follow_up")
_YAMLISH = st.text(alphabet="[]{}:-?&*!|>'\"#%@`,. \n\t\r~abcNOyes019\\_", max_size=300)


@st.composite
def form_texts(draw: Any) -> bytes:
    name = draw(st.sampled_from(FORM_NAMES))
    base = yamlio.dump(form(name)).encode()
    return mutate(base, draw)


@FUZZ
@given(st.one_of(st.binary(max_size=1500), _YAMLISH.map(str.encode), form_texts()))
def test_form_file_parses_and_round_trips_or_refuses(data: bytes) -> None:
    repo = SimpleNamespace(schemas=schemas())
    try:
        typed = Repository.read_form_file(repo, data, allowed=list(FORM_NAMES))  # type: ignore[arg-type]
    except BaseException as exc:
        refuses_cleanly(exc)
        return
    # What was read is what would be written back: dump and read again gives the same.
    again = Repository.read_form_file(
        repo,
        yamlio.dump(typed).encode(),  # type: ignore[arg-type]
        allowed=list(FORM_NAMES),
    )
    assert again == typed


# -- staff registry and settings -------------------------------------------------------


@functools.cache
def config_documents() -> dict[str, bytes]:
    members = {
        sid: {
            "role": role,
            "team": team,
            "recipient": crypto.generate_identity()[1],
            "signing_key": None,
            "active": True,
        }
        for sid, role, team in STAFF_ROWS
    }
    from cmgit.registry import settings_defaults
    from cmgit.store import DEFAULT_CRITERIA

    settings_doc = settings_defaults(schemas().schemas[SETTINGS])
    settings_doc.update(
        programme_name=f"Programme {CANARY}",
        case_id_prefix="CP",
        vulnerability_criteria=list(DEFAULT_CRITERIA),
    )
    return {
        STAFF: yamlio.dump({"staff": members}).encode(),
        SETTINGS: yamlio.dump(settings_doc).encode(),
    }


@FUZZ
@given(st.sampled_from([STAFF, SETTINGS]), st.data())
def test_staff_and_settings_documents(schema_id: str, data: st.DataObject) -> None:
    base = config_documents()[schema_id]
    text = data.draw(st.one_of(st.binary(max_size=800), st.just(base), mutated(lambda: base)))
    try:
        doc = config.read_document(text, schemas(), schema_id, "document")
        registry = Registry.from_doc(doc) if schema_id == STAFF else None
    except BaseException as exc:
        refuses_cleanly(exc)
        return
    again = config.read_document(yamlio.dump(doc).encode(), schemas(), schema_id, "document")
    assert again == doc
    if registry is not None:
        assert Registry.from_doc(registry.to_doc()).to_doc() == registry.to_doc()


def test_the_sample_documents_are_valid() -> None:
    """The fuzzers start from documents that parse, or they test nothing."""
    for schema_id, data in config_documents().items():
        config.read_document(data, schemas(), schema_id, "document")
    assert open_record(sample_record()[0], keys()[:1]).case_id == OPEN_FIELDS["case_id"]
    repo = SimpleNamespace(schemas=schemas())
    for name in FORM_NAMES:
        Repository.read_form_file(
            repo,
            yamlio.dump(form(name)).encode(),  # type: ignore[arg-type]
            allowed=list(FORM_NAMES),
        )


# -- identity files ----------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=400),
        st.builds(lambda: None).map(lambda _: crypto.generate_identity()[0].encode()),
    ),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_identity_file_loads_or_refuses(content: bytes, newline: bytes) -> None:
    body = b"# created: now" + newline + content + newline
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "id.txt"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, stat.S_IRUSR | stat.S_IWUSR)
        os.write(fd, body)
        os.close(fd)
        try:
            found = crypto.load_identities(path)
        except BaseException as exc:
            refuses_cleanly(exc)
            return
    assert found and all(crypto.RECIPIENT_RE.fullmatch(i.recipient) for i in found)


# -- commit trailers and case IDs --------------------------------------------------------


TOKENS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@FUZZ
@given(
    st.text(max_size=600),
    st.lists(
        st.tuples(st.from_regex(r"Cmgit-[A-Z][a-z]{1,8}", fullmatch=True), TOKENS), max_size=6
    ),
)
def test_commit_trailers(noise: str, trailers: list[tuple[str, str]]) -> None:
    # Anything in a commit message parses without error to keys and one-line values.
    found = history.parse_trailers(noise)
    for key, values in found.items():
        assert key.startswith("Cmgit-")
        assert all("\n" not in v and "\r" not in v for v in values)
    # What cmgit writes reads back as written, and free text cannot add a trailer.
    message = history.format_message("CP-7K2M9QX4: record note", trailers)
    expected: dict[str, list[str]] = {}
    for key, value in trailers:
        expected.setdefault(key, []).append(value)
    assert history.parse_trailers(message) == expected
    try:
        history.format_message("CP-7K2M9QX4: note", [("Cmgit-Reason", noise)])
    except ValueError:
        pass
    else:
        assert history.parse_trailers(
            history.format_message("CP-7K2M9QX4: note", [("Cmgit-Reason", noise)])
        ) == {"Cmgit-Reason": [noise]}


@FUZZ
@given(
    st.one_of(st.text(max_size=40), st.from_regex(r"[A-Z]{2,5}-[0-9A-Z]{8}.{0,2}", fullmatch=True))
)
def test_case_ids(text: str) -> None:
    try:
        case_id = ids.check_case_id(text)
    except BaseException as exc:
        refuses_cleanly(exc)
        assert exc.exit_code == 2  # type: ignore[attr-defined]
        return
    assert case_id == text and ids.CASE_ID_RE.fullmatch(text)
    path = ids.record_path(case_id)
    assert ids.case_id_from_path(path) == case_id
    assert ".." not in path and "\\" not in path and path.isascii()


@FUZZ
@given(st.text(max_size=80))
def test_record_paths(path: str) -> None:
    case_id = ids.case_id_from_path(path)
    assert case_id is None or ids.record_path(case_id) == path


def test_size_limits_refuse_before_parsing() -> None:
    """The largest inputs are refused by size alone, cheaply."""
    order = schemas().open_fields
    for call in (
        lambda: records.parse_file(b"x" * (records.MAX_RECORD_FILE + 1), order),
        lambda: records.parse_payload(b"x" * (records.MAX_PAYLOAD * 2 + 1)),
        lambda: crypto.inspect("x" * (crypto.MAX_SEALED_BYTES + 1)),
        lambda: yamlio.load(
            b"x" * (config.MAX_CONFIG_BYTES + 1), max_bytes=config.MAX_CONFIG_BYTES
        ),
    ):
        try:
            call()
        except TooLarge:
            continue
        raise AssertionError("oversized input was not refused as TooLarge")
