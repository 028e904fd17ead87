"""cmgit.yamlio: hostile YAML in (B1, B2, B3, B8, B9, B10), canonical YAML out."""

from __future__ import annotations

import ast
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmgit import yamlio
from cmgit.errors import INVALID_RECORD, ParseError, TooLarge
from cmgit.yamlio import MAX_DEPTH, Plain, coerce, dump, load

CANARY = "CANARY-NAME-7f3a"


def no_refs(ref: str) -> Mapping[str, Any]:
    raise AssertionError(f"unexpected $ref {ref}")


def refused(
    data: bytes | str,
    line: int | None,
    column: int | None,
    *,
    exc: type[Exception] = ParseError,
    **kw: Any,
) -> str:
    """Load must refuse with `exc`, name the line and column, and not echo the canary."""
    with pytest.raises(exc) as info:
        load(data, what="form file", **kw)
    message = str(info.value)
    assert message.startswith("form file: ")
    if line is not None:
        assert f"line {line}, column {column}" in message
    assert CANARY not in message
    assert "7f3a" not in message
    assert "\n" not in message
    return message


@pytest.fixture(params=["libyaml", "pure"])
def either_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C parser and with PyYAML's pure-Python fallback."""
    if request.param == "pure":
        monkeypatch.setattr(yamlio, "_loader", lambda: yaml.BaseLoader)
    return str(request.param)


# ---------------------------------------------------------------- load: the basics


def test_uses_the_c_parser() -> None:
    assert yaml.__with_libyaml__
    assert yamlio._loader() is yaml.CBaseLoader


def test_plain_quoted_and_block_scalars() -> None:
    doc = load("a: plain\nb: \"dq\"\nc: 'sq'\nd: |\n  lit\ne: >\n  folded\n  text\nf:\n")
    assert doc == {"a": "plain", "b": "dq", "c": "sq", "d": "lit\n", "e": "folded text\n", "f": ""}
    assert type(doc["a"]) is Plain
    assert type(doc["f"]) is Plain
    for key in "bcde":
        assert type(doc[key]) is str
    assert all(type(k) is str for k in doc)


def test_nested_collections_and_flow_style() -> None:
    doc = load("a:\n  - x\n  - {b: [1, '2'], c: {}}\n  - []\n")
    assert doc == {"a": ["x", {"b": ["1", "2"], "c": {}}, []]}
    assert type(doc["a"][1]["b"][0]) is Plain
    assert type(doc["a"][1]["b"][1]) is str


def test_no_implicit_typing_at_all() -> None:
    doc = load("a: NO\nb: 0123\nc: 1.10\nd: 2026-01-02\ne: ~\nf: 1e3\ng: true\nh: 0x1F\n")
    assert doc == {
        "a": "NO",
        "b": "0123",
        "c": "1.10",
        "d": "2026-01-02",
        "e": "~",
        "f": "1e3",
        "g": "true",
        "h": "0x1F",
    }
    assert all(type(v) is Plain for v in doc.values())


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "--- \n...\n", "\n\n"])
def test_empty_document_is_none(text: str) -> None:
    assert load(text) is None


def test_root_scalar() -> None:
    assert load("hello\n") == "hello"
    assert type(load("hello\n")) is Plain
    assert type(load("'hello'\n")) is str


def test_crlf_is_accepted() -> None:
    assert load(b"a: 1\r\nb:\r\n  - x\r\n") == {"a": "1", "b": ["x"]}


def test_bytes_and_str_give_the_same_result() -> None:
    text = "name: Zoë\nlist: [a, b]\n"
    assert load(text) == load(text.encode("utf-8"))


def test_explicit_document_markers_and_version_directive() -> None:
    assert load("%YAML 1.1\n---\na: b\n...\n") == {"a": "b"}


def test_four_kilobyte_form_loads_as_written() -> None:
    # Its speed is measured in bench/parsing.py.
    text = dump(sample_form())
    assert 3000 < len(text.encode()) < 6000
    assert load(text.encode()) == load(text)


# ------------------------------------------------------------------- size (B7, B9)


def test_size_limit_bytes() -> None:
    assert load(b"a: b\n", max_bytes=5) == {"a": "b"}
    refused(b"a: bc\n", None, None, exc=TooLarge, max_bytes=5)


def test_size_limit_counts_utf8_bytes_of_a_str() -> None:
    assert load("a: é", max_bytes=5) == {"a": "é"}
    refused("a: éé", None, None, exc=TooLarge, max_bytes=5)


def test_too_large_is_refused_before_decoding() -> None:
    # Invalid UTF-8 beyond the limit: the size is what gets reported.
    refused(b"\xff" * 20, None, None, exc=TooLarge, max_bytes=10)
    assert TooLarge("x").exit_code == INVALID_RECORD


def test_million_character_string_loads() -> None:
    doc = load("narrative: " + "x" * 1_000_000)
    assert len(doc["narrative"]) == 1_000_000


def test_million_character_multibyte_string_is_too_large() -> None:
    refused("narrative: " + "é" * 1_000_000, None, None, exc=TooLarge)


# ------------------------------------------------------ text refusals (B10)


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        pytest.param(b"\xef\xbb\xbfname: " + CANARY.encode(), 1, 1, id="utf8-bom"),
        pytest.param(("name: " + CANARY).encode("utf-16"), 1, 1, id="utf16-bom"),
        pytest.param(("name: " + CANARY).encode("utf-16-be"), 1, 1, id="utf16be-no-bom"),
        pytest.param(("name: " + CANARY).encode("utf-32"), 1, 1, id="utf32-bom"),
        pytest.param(f"a: b\nname: {CANARY}\x00x".encode(), 2, 23, id="nul"),
        pytest.param(f"a: b\nname: {CANARY}\x01".encode(), 2, 23, id="c0"),
        pytest.param(f"name: {CANARY}\x1b[31m".encode(), 1, 23, id="escape"),
        pytest.param(f"name: {CANARY}\x7f".encode(), 1, 23, id="del"),
        pytest.param(f"name: {CANARY}\x85".encode(), 1, 23, id="c1-nel"),
        pytest.param(f"name: {CANARY}\x9b".encode(), 1, 23, id="c1-csi"),
        pytest.param(f"case: CP-1\u202e{CANARY}".encode(), 1, 11, id="bidi-override"),
        pytest.param(f"case: CP-1\u2066{CANARY}".encode(), 1, 11, id="bidi-isolate"),
        pytest.param(f"a: b\n\nname: x\ufeff{CANARY}".encode(), 3, 8, id="feff-inside"),
        pytest.param(f"name: {CANARY}\xff".encode("latin-1"), 1, 23, id="latin1"),
        pytest.param(b"name: \xc0\xaf" + CANARY.encode(), 1, 7, id="overlong"),
        pytest.param(b"name: \xed\xa0\x80" + CANARY.encode(), 1, 7, id="utf8-surrogate"),
        pytest.param(f"a: x\r\nname: {CANARY}\x02".encode(), 2, 23, id="crlf-lines"),
        pytest.param(f"a: x\rname: {CANARY}\x02".encode(), 2, 23, id="cr-lines"),
        pytest.param(f"name: é{CANARY}\x03".encode(), 1, 24, id="column-in-characters"),
    ],
)
def test_bad_text_is_refused(data: bytes, line: int, column: int) -> None:
    refused(data, line, column)
    refused(data.decode("utf-8", "surrogateescape"), line, column)


def test_str_with_lone_surrogate_is_refused() -> None:
    refused(f"name: {CANARY}\ud800", 1, 23)


def test_str_with_leading_feff_is_a_bom() -> None:
    message = refused(f"\ufeffname: {CANARY}", 1, 1)
    assert "byte-order mark" in message


@pytest.mark.parametrize("escape", ["\\x01", "\\u202E", "\\x85", "\\uFEFF", "\\u2066", "\\0"])
def test_escaped_forbidden_character_in_double_quotes_is_refused(escape: str) -> None:
    refused(f'a: b\nname: "{CANARY}{escape}"\n', 2, 7)


def test_tab_and_cr_escapes_are_allowed() -> None:
    assert load('a: "x\\ty\\r\\n"') == {"a": "x\ty\r\n"}


# --------------------------------------------------------------------- NFC (B10)


def test_names_are_nfc_normalised() -> None:
    decomposed = "Zoe\u0308 Mu\u0308ller"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    doc = load(f"name: {decomposed}\nquoted: '{decomposed}'\n{decomposed}: key\n")
    assert doc == {"name": composed, "quoted": composed, composed: "key"}
    assert type(doc["name"]) is Plain
    assert type(doc["quoted"]) is str
    assert all(type(k) is str for k in doc)


def test_keys_equal_after_nfc_are_duplicates() -> None:
    refused("Zoe\u0308: 1\nZo\u00eb: 2\n", 2, 1)


# ------------------------------------------------------- YAML features refused


@pytest.mark.parametrize(
    ("text", "line", "column", "phrase"),
    [
        pytest.param(f"a: b\nname: &x {CANARY}\n", 2, 7, "anchor", id="scalar-anchor"),
        pytest.param(f"list: &x\n  - {CANARY}\n", 1, 7, "anchor", id="sequence-anchor"),
        pytest.param(f"map: &x\n  n: {CANARY}\n", 1, 6, "anchor", id="mapping-anchor"),
        pytest.param(f"name: {CANARY}\nother: *x\n", 2, 8, "alias", id="undefined-alias"),
        pytest.param(f"a: !!str {CANARY}\n", 1, 4, "tag", id="core-tag"),
        pytest.param(f"a: !{CANARY} x\n", 1, 4, "tag", id="local-tag"),
        pytest.param(f"a: ! {CANARY}\n", 1, 4, "tag", id="non-specific-tag"),
        pytest.param(f"a: !!python/object:os.system {CANARY}\n", 1, 4, "tag", id="python-tag"),
        pytest.param(f"a: !<tag:yaml.org,2002:int> {CANARY}\n", 1, 4, "tag", id="verbatim-tag"),
        pytest.param(f"a: !!map {{n: {CANARY}}}\n", 1, 4, "tag", id="mapping-tag"),
        pytest.param(f"a: !!seq [{CANARY}]\n", 1, 4, "tag", id="sequence-tag"),
        pytest.param(
            f"case_id: A\nstatus: {CANARY}\ncase_id: B\n", 3, 1, "duplicate", id="duplicate-key"
        ),
        pytest.param(
            f"f:\n  status: x\n  name: {CANARY}\n  status: y\n",
            4,
            3,
            "duplicate",
            id="duplicate-nested",
        ),
        pytest.param(f"{{a: {CANARY}, 'a': 2}}\n", 1, 23, "duplicate", id="duplicate-flow"),
        pytest.param(f"[{CANARY}]: x\n", 1, 1, "key", id="sequence-key"),
        pytest.param(f"? {{n: {CANARY}}}\n: x\n", 1, 3, "key", id="mapping-key"),
        pytest.param(f"name: {CANARY}\n---\nother: x\n", 2, 1, "document", id="two-documents"),
        pytest.param(f"--- {CANARY}\n--- x\n", 2, 1, "document", id="two-explicit-documents"),
    ],
)
def test_yaml_feature_refused(
    either_parser: str, text: str, line: int, column: int, phrase: str
) -> None:
    message = refused(text, line, column)
    assert phrase in message


def test_what_names_the_input() -> None:
    with pytest.raises(ParseError, match=r"^staff file: duplicate key at line 2, column 1$"):
        load("a: 1\na: 2\n", what="staff file")


# ----------------------------------------------------------------- B8: aliases

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_refused_at_its_first_anchor(either_parser: str) -> None:
    refused(BILLION_LAUGHS, 1, 4)


def test_alias_bomb_without_anchor_first_is_refused_at_the_alias() -> None:
    # The anchor is refused first in any real bomb; an alias alone is refused too.
    refused("x: [" + ",".join(["*a"] * 100_000) + "]\n", 1, 5)


def test_a_single_alias_is_refused() -> None:
    refused(f"name: {CANARY}\nsame: *name\n", 2, 7)


def test_merge_key_is_just_a_key() -> None:
    # Without anchors and aliases "<<" cannot merge anything: it stays an ordinary key.
    assert load("'<<': x\n") == {"<<": "x"}


# ------------------------------------------------------------------ B9: depth


def test_depth_limit_exact() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value = load(ok)
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []
    refused("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), 1, MAX_DEPTH + 1)


def test_block_depth_limit() -> None:
    ok = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH)) + "  " * MAX_DEPTH + "x\n"
    assert load(ok) is not None
    deep = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * 40 + "x\n"
    refused(deep, MAX_DEPTH + 1, 2 * MAX_DEPTH + 1)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 10_000 + "]" * 10_000, id="flow-sequences"),
        pytest.param("{a: " * 10_000 + "}" * 10_000, id="flow-mappings"),
        pytest.param("- " * 10_000 + "x", id="block-sequences"),
        # As deep as block mappings get within the size limit (each level indents one more).
        pytest.param("".join(" " * i + "a:\n" for i in range(1_400)), id="block-mappings"),
        pytest.param("[" * 1_000_000, id="megabyte-of-brackets"),
    ],
)
def test_ten_thousand_deep_is_a_parse_error(either_parser: str, text: str) -> None:
    message = refused(text, None, None)
    assert f"deeper than {MAX_DEPTH}" in message


def test_5000_digit_integer_stays_a_string_under_an_integer_schema() -> None:
    digits = "9" * 5000
    doc = load(f"count: {digits}\n")
    schema = {"type": "object", "properties": {"count": {"type": "integer"}}}
    result = coerce(doc, schema, no_refs)
    assert result == {"count": digits}
    assert type(result["count"]) is str


# ------------------------------------------------------ B1: malformed YAML


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param(f"name: [{CANARY}, b\nnext: x\n", 2, id="unclosed-bracket"),
        pytest.param(f"name: {{a: {CANARY}\n", 2, id="unclosed-brace"),
        pytest.param(f"child:\n\tname: {CANARY}\n", 2, id="tab-indentation"),
        pytest.param(f"child:\n  name: {CANARY}\n\tage: 3\n", 3, id="tab-after-spaces"),
        pytest.param(f'name: "{CANARY}\n', 2, id="truncated-double-quote"),
        pytest.param(f"name: '{CANARY}", 1, id="truncated-single-quote"),
        pytest.param(f"child:\n  name: {CANARY}\n  age", (3, 4), id="truncated-key"),
        pytest.param(f"a: b\n  c: {CANARY}\n", 2, id="bad-indentation"),
        pytest.param(f"- a\nb: {CANARY}\n", 2, id="sequence-then-mapping"),
        pytest.param(f"name: {CANARY}: x\n", 1, id="colon-in-plain"),
        pytest.param(f'name: "{CANARY}\\q"\n', 1, id="bad-escape"),
        pytest.param(f"%TAG !x! tag:{CANARY}:\n--- !x!y z\n", 2, id="tag-directive"),
        pytest.param(f"name: {CANARY}\n@x\n", 2, id="reserved-indicator"),
        pytest.param(f"k: |0\n  {CANARY}\n", 1, id="bad-block-indicator"),
    ],
)
def test_malformed_yaml(either_parser: str, text: str, lines: int | tuple[int, ...]) -> None:
    # The two parsers sometimes notice an error on different lines.
    message = refused(text, None, None)
    expected = lines if isinstance(lines, tuple) else (lines,)
    assert any(f"at line {line}, column " in message for line in expected)


def test_syntax_error_message_shape() -> None:
    with pytest.raises(ParseError) as info:
        load(f"name: [{CANARY}, b\n", what="form file")
    assert str(info.value) == (
        "form file: YAML syntax error at line 2, column 1: did not find expected ',' or ']'"
    )
    assert info.value.exit_code == INVALID_RECORD


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("could not find expected ':'", "could not find expected ':'"),
        ("did not find expected <document start>", "did not find expected <document start>"),
        (
            f"found character '{CANARY}' that cannot start any token",
            "found character that cannot start any token",
        ),
        (
            "found character '\\t' that cannot start any token",
            "found character that cannot start any token",
        ),
        (f'found undefined tag handle "!{CANARY}!"', "found undefined tag handle"),
        (
            "expected '<document start>', but found '<block mapping start>'",
            "expected '<document start>', but found '<block mapping start>'",
        ),
        (f"found unknown escape character 'é{CANARY}'", "found unknown escape character"),
        ("é" + CANARY, "invalid YAML"),
        (None, "invalid YAML"),
        ("x" * 500, "invalid YAML"),
    ],
)
def test_problem_text_never_carries_input(problem: str | None, expected: str) -> None:
    assert yamlio._phrase(problem) == expected


# --------------------------------------------------------------- coerce (B3)

TRAPS = [
    "NO",
    "no",
    "yes",
    "Yes",
    "on",
    "OFF",
    "y",
    "n",
    "0123",
    "1.10",
    "2026-01-02",
    "2026-01-02 10:00:00",
    "1e3",
    "0x1F",
    "0o17",
    "0b101",
    "1_000",
    "12:30",
    "190:20:30",
    ".inf",
    "-.nan",
    "+1",
    "-1",
    "1",
    "true",
    "False",
    "null",
    "~",
    "",
]


@pytest.mark.parametrize("trap", TRAPS)
def test_traps_stay_strings_under_a_string_schema(trap: str) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string"}}}
    result = coerce({"v": Plain(trap)}, schema, no_refs)
    assert result == {"v": trap}
    assert type(result["v"]) is str


def test_traps_loaded_from_text_stay_strings() -> None:
    text = "".join(f"k{i}: {t}\n" for i, t in enumerate(TRAPS))
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    assert coerce(load(text), schema, no_refs) == {f"k{i}": t for i, t in enumerate(TRAPS)}


def test_round_trip_keeps_0123_and_friends() -> None:
    value = {"id": "0123", "answer": "NO", "version": "1.10", "date": "2026-01-02"}
    text = dump(value)
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    assert load(text) == value
    assert coerce(load(text), schema, no_refs) == value
    assert yaml.safe_load(text) == value  # a YAML 1.1 reader agrees


def convert(text: str, schema: Mapping[str, Any]) -> Any:
    return coerce(Plain(text), schema, no_refs)


@pytest.mark.parametrize(
    ("text", "schema", "expected"),
    [
        ("5", {"type": "integer"}, 5),
        ("-5", {"type": "integer"}, -5),
        ("0", {"type": "integer"}, 0),
        ("9" * 18, {"type": "integer"}, int("9" * 18)),
        ("9" * 19, {"type": "integer"}, "9" * 19),
        ("0123", {"type": "integer"}, "0123"),
        ("+5", {"type": "integer"}, "+5"),
        ("1.0", {"type": "integer"}, "1.0"),
        ("1_000", {"type": "integer"}, "1_000"),
        ("0x1F", {"type": "integer"}, "0x1F"),
        ("-0", {"type": "integer"}, 0),
        ("true", {"type": "boolean"}, True),
        ("True", {"type": "boolean"}, True),
        ("TRUE", {"type": "boolean"}, True),
        ("false", {"type": "boolean"}, False),
        ("FALSE", {"type": "boolean"}, False),
        ("yes", {"type": "boolean"}, "yes"),
        ("no", {"type": "boolean"}, "no"),
        ("on", {"type": "boolean"}, "on"),
        ("off", {"type": "boolean"}, "off"),
        ("tRUE", {"type": "boolean"}, "tRUE"),
        ("", {"type": "null"}, None),
        ("~", {"type": "null"}, None),
        ("null", {"type": "null"}, None),
        ("Null", {"type": "null"}, None),
        ("NULL", {"type": "null"}, None),
        ("none", {"type": "null"}, "none"),
        ("1.5", {"type": "number"}, 1.5),
        ("-0.25", {"type": "number"}, -0.25),
        ("2", {"type": "number"}, 2),
        ("1e3", {"type": "number"}, "1e3"),
        (".5", {"type": "number"}, ".5"),
        ("1.", {"type": "number"}, "1."),
        ("NaN", {"type": "number"}, "NaN"),
        ("~", {"type": ["string", "null"]}, None),
        ("", {"type": ["string", "null"]}, None),
        ("null", {"type": ["string", "null"]}, None),
        ("NO", {"type": ["string", "null"]}, "NO"),
        ("none", {"type": ["string", "null"]}, "none"),
        ("", {"type": "string"}, ""),
        ("", {"type": "integer"}, ""),
        ("~", {"type": "string"}, "~"),
        ("5", {"type": ["integer", "string"]}, "5"),
        ("5", {"type": ["integer", "null"]}, 5),
        ("true", {"type": ["boolean", "integer"]}, True),
        ("7", {"type": "object"}, "7"),
        ("7", {}, "7"),
        ("7", True, "7"),
    ],
)
def test_plain_conversion(text: str, schema: Any, expected: Any) -> None:
    result = convert(text, schema)
    assert result == expected
    assert type(result) is type(expected)


def test_non_plain_strings_are_never_converted() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    result = coerce(load("a: '5'\nb: \"true\"\nc: |\n  7\n"), schema, no_refs)
    assert result == {"a": "5", "b": "true", "c": "7\n"}


def test_unknown_keys_and_missing_schema_leave_strings() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    result = coerce(load("n: 1\nextra: 2\nnested: {m: 3}\n"), schema, no_refs)
    assert result == {"n": 1, "extra": "2", "nested": {"m": "3"}}
    assert type(result["extra"]) is str
    assert type(result["nested"]["m"]) is str


def test_result_contains_no_plain() -> None:
    doc = load("a: x\nb: [y, {c: z}]\n")
    result = coerce(doc, {}, no_refs)

    def walk(v: Any) -> None:
        assert type(v) is not Plain
        if isinstance(v, dict):
            for k, x in v.items():
                assert type(k) is str
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(result)


COMMON: dict[str, Mapping[str, Any]] = {
    "urn:cmgit:schema:common#/$defs/date": {"type": "string", "format": "date"},
    "urn:cmgit:schema:common#/$defs/count": {"type": "integer", "minimum": 0},
    "urn:cmgit:schema:common#/$defs/flag": {"$ref": "urn:cmgit:schema:common#/$defs/bool"},
    "urn:cmgit:schema:common#/$defs/bool": {"type": "boolean"},
    "urn:cmgit:schema:common#/$defs/risk": {"enum": ["low", "medium", "high"]},
    "urn:cmgit:schema:common#/$defs/person": {
        "type": "object",
        "properties": {"age": {"$ref": "urn:cmgit:schema:common#/$defs/count"}},
    },
}


def common(ref: str) -> Mapping[str, Any]:
    return COMMON[ref]


def test_refs_are_followed_with_the_ref_exactly_as_written() -> None:
    seen: list[str] = []

    def resolve(ref: str) -> Mapping[str, Any]:
        seen.append(ref)
        return COMMON[ref]

    schema = {
        "type": "object",
        "properties": {
            "opened": {"$ref": "urn:cmgit:schema:common#/$defs/date"},
            "visits": {"$ref": "urn:cmgit:schema:common#/$defs/count"},
            "urgent": {"$ref": "urn:cmgit:schema:common#/$defs/flag"},
            "child": {"$ref": "urn:cmgit:schema:common#/$defs/person"},
        },
    }
    doc = load("opened: 2026-01-02\nvisits: 3\nurgent: true\nchild: {age: 7}\n")
    assert coerce(doc, schema, resolve) == {
        "opened": "2026-01-02",
        "visits": 3,
        "urgent": True,
        "child": {"age": 7},
    }
    assert "urn:cmgit:schema:common#/$defs/date" in seen
    assert "urn:cmgit:schema:common#/$defs/bool" in seen


def test_date_or_null_as_the_case_schema_writes_it() -> None:
    schema = {
        "type": ["string", "null"],
        "anyOf": [{"$ref": "urn:cmgit:schema:common#/$defs/date"}, {"type": "null"}],
    }
    assert coerce(Plain("2026-01-02"), schema, common) == "2026-01-02"
    assert coerce(Plain(""), schema, common) is None
    assert coerce(Plain("~"), schema, common) is None


def test_all_of_intersects() -> None:
    schema = {"allOf": [{"type": ["integer", "string"]}, {"type": ["integer", "null"]}]}
    assert convert("5", schema) == 5
    assert convert("~", schema) == "~"  # null is not allowed by both
    ref_and_type = {"type": "string", "$ref": "urn:cmgit:schema:common#/$defs/date"}
    assert coerce(Plain("~"), ref_and_type, common) == "~"


def test_any_of_and_one_of_unite() -> None:
    assert convert("5", {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}) == 5
    assert convert("true", {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}) is True
    assert convert("true", {"oneOf": [{"type": "integer"}, {"type": "boolean"}]}) is True
    assert convert("5", {"anyOf": [{"type": "integer"}, {"type": "string"}]}) == "5"
    assert convert("5", {"anyOf": [{"type": "integer"}, {"minimum": 3}]}) == 5


def test_number_includes_integer_in_intersections() -> None:
    assert convert("5", {"allOf": [{"type": "number"}, {"type": "integer"}]}) == 5
    assert convert("5.5", {"allOf": [{"type": "number"}, {"type": "integer"}]}) == "5.5"


def test_enum_and_const_imply_types() -> None:
    assert convert("NO", {"enum": ["YES", "NO"]}) == "NO"
    assert convert("3", {"enum": [1, 2, 3]}) == 3
    assert convert("true", {"const": True}) is True
    assert convert("~", {"enum": ["a", None]}) is None
    assert coerce(Plain("high"), {"$ref": "urn:cmgit:schema:common#/$defs/risk"}, common) == "high"


def test_mixed_enum_prefers_the_reading_it_contains() -> None:
    assert convert("1", {"enum": [1, "a"]}) == 1
    assert convert("a", {"enum": [1, "a"]}) == "a"
    assert convert("2", {"enum": [1, "a"]}) == "2"  # no reading matches: string wins


def test_properties_additional_and_pattern_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "patternProperties": {"^flag_": {"type": "boolean"}},
        "additionalProperties": {"type": "null"},
    }
    doc = load("n: 1\nflag_x: true\nother: ~\n")
    assert coerce(doc, schema, no_refs) == {"n": 1, "flag_x": True, "other": None}
    closed = {"type": "object", "additionalProperties": False}
    assert coerce(load("x: 1\n"), closed, no_refs) == {"x": "1"}


def test_items_and_prefix_items() -> None:
    schema = {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "boolean"}],
        "items": {"type": "integer"},
    }
    assert coerce(load("[1, true, 3, 4]"), schema, no_refs) == ["1", True, 3, 4]
    assert coerce(load("[1, 2]"), {"items": {"type": "integer"}}, no_refs) == [1, 2]
    assert coerce(load("[1, 2]"), {"items": False}, no_refs) == ["1", "2"]


def test_ref_cycles_terminate() -> None:
    loop: dict[str, Mapping[str, Any]] = {
        "a": {"$ref": "b"},
        "b": {"allOf": [{"$ref": "a"}, {"type": "integer"}]},
    }

    def resolve(ref: str) -> Mapping[str, Any]:
        return loop[ref]

    assert coerce(Plain("5"), {"$ref": "a"}, resolve) == 5
    assert coerce({"x": Plain("5")}, {"$ref": "a"}, resolve) == {"x": "5"}


def test_a_ref_repeated_in_a_branch_still_counts() -> None:
    # The same $ref outside and inside anyOf: the branch must not be read as "nothing".
    schema = {
        "$ref": "urn:cmgit:schema:common#/$defs/date",
        "anyOf": [{"$ref": "urn:cmgit:schema:common#/$defs/date"}, {"type": "null"}],
    }
    assert coerce(Plain("2026-01-02"), schema, common) == "2026-01-02"
    assert coerce(Plain("~"), schema, common) == "~"


def test_recursive_schema_follows_the_data() -> None:
    tree = {
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "tree"}},
        },
    }

    def resolve(ref: str) -> Mapping[str, Any]:
        assert ref == "tree"
        return tree

    text = "value: 1\nchildren:\n  - value: 2\n    children:\n      - value: 3\n"
    assert coerce(load(text), tree, resolve) == {
        "value": 1,
        "children": [{"value": 2, "children": [{"value": 3}]}],
    }


def test_coerce_refuses_absurd_depth_built_by_hand() -> None:
    value: Any = Plain("x")
    for _ in range(1000):
        value = [value]
    with pytest.raises(ParseError):
        coerce(value, {}, no_refs, what="form")


def test_coerce_leaves_non_strings_alone() -> None:
    assert coerce({"a": 1, "b": None, "c": True}, {"type": "object"}, no_refs) == {
        "a": 1,
        "b": None,
        "c": True,
    }


# ---------------------------------------------------------------------- dump


def sample_form() -> dict[str, Any]:
    return {
        "case_id": "CP-7KQ2M9XA",
        "status": "open",
        "opened": "2026-01-02",
        "child": {
            "name": f"{CANARY} Zoë Müller",
            "born": "2015-03-04",
            "languages": ["en", "pl"],
        },
        "referral": {"source": "school", "urgent": False, "concerns": ["neglect"]},
        "contacts": [
            {
                "name": f"Person {i}",
                "relation": "aunt",
                "phone": "07700 900123",
                "notes": "Visited at home.\nNo concerns noted.\n",
            }
            for i in range(8)
        ],
        "narrative": ("The child was calm and engaged during the visit. " * 6 + "\n") * 6,
        "visits": [{"date": f"2026-01-{i + 10}", "minutes": 45, "alone": True} for i in range(8)],
        "closed": None,
        "tags": [],
        "extra": {},
    }


def test_dump_golden() -> None:
    value = {
        "case_id": "CP-7KQ2M9XA",
        "version": 3,
        "urgent": False,
        "closed": None,
        "opened": "2026-01-02",
        "answer": "NO",
        "name": "Zoë Müller",
        "child": {"born": "0123", "languages": ["en", "yes"], "notes": {}},
        "visits": [{"date": "2026-01-10", "by": "sw-001"}, ["a", []]],
        "tags": [],
        "narrative": "First line.\n  Indented line.\n",
        "summary": "No newline at end\nsecond",
        "kept": "x\n\n",
        "padding": "",
    }
    assert dump(value) == (
        "case_id: CP-7KQ2M9XA\n"
        "version: 3\n"
        "urgent: false\n"
        "closed: null\n"
        'opened: "2026-01-02"\n'
        'answer: "NO"\n'
        "name: Zoë Müller\n"
        "child:\n"
        '  born: "0123"\n'
        "  languages:\n"
        "    - en\n"
        '    - "yes"\n'
        "  notes: {}\n"
        "visits:\n"
        '  - date: "2026-01-10"\n'
        "    by: sw-001\n"
        "  - - a\n"
        "    - []\n"
        "tags: []\n"
        "narrative: |\n"
        "  First line.\n"
        "    Indented line.\n"
        "summary: |-\n"
        "  No newline at end\n"
        "  second\n"
        "kept: |+\n"
        "  x\n"
        "\n"
        'padding: ""\n'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({}, "{}\n"),
        ([], "[]\n"),
        (None, "null\n"),
        (True, "true\n"),
        (-7, "-7\n"),
        ("plain", "plain\n"),
        ("", '""\n'),
        ("a\nb\n", "|\n  a\n  b\n"),
        ("x\n\n", '"x\\n\\n"\n'),
        ({"k": "x\n\n"}, 'k: "x\\n\\n"\n'),
        ([1.5], "- 1.5\n"),
    ],
)
def test_dump_small_values(value: Any, text: str) -> None:
    assert dump(value) == text


@pytest.mark.parametrize(
    "word",
    [
        "open",
        "CP-7KQ2M9XA",
        "north",
        "sw-001",
        "a.b",
        "path/to",
        "_x",
        "Zoë",
        "two words",
        "St Marys Primary",
        "yesterday",
        "nobody",
        "online",
        "nullable",
        "Y2K",
    ],
)
def test_safe_words_are_plain(word: str) -> None:
    assert dump({"k": word}) == f"k: {word}\n"


@pytest.mark.parametrize(
    "word",
    [
        *TRAPS,
        "Y",
        "N",
        "nULL",
        "oN",
        "<<",
        "=",
        "- a",
        "a: b",
        "a #b",
        "#x",
        "[x]",
        "{x}",
        "&a",
        "*a",
        "!t",
        "|",
        ">",
        "%x",
        "@x",
        "`x",
        "'q'",
        '"q"',
        " a",
        "a ",
        "a  b",
        "?",
        ":",
        "-",
        "a:b",
        "a,b",
        "---",
        "...",
        "12",
        "1.5",
        "-5",
        ".5",
        "St Mary's",
    ],
)
def test_traps_are_quoted(word: str) -> None:
    text = dump({"k": word})
    assert text.startswith('k: "')
    assert load(text) == {"k": word}
    assert type(load(text)["k"]) is str
    assert yaml.safe_load(text) == {"k": word}


@pytest.mark.parametrize(
    "text",
    [
        "a\u2028b",
        "a\u2029b",
        "a\x85b",
        "a\x01b",
        "a\x7fb",
        "a\x9fb",
        "a\ufeffb",
        "a\u202eb",
        "a\tb",
        "a\rb",
        "a\\b",
        'a"b',
        "a\nb\r\n",
        "line \nnext",
        " lead\nx",
        "a\n\tb",
    ],
)
def test_special_characters_are_escaped(text: str) -> None:
    out = dump({"k": text})
    assert out.startswith('k: "')
    for ch in "\u2028\u2029\x85\x01\x7f\x9f\ufeff\u202e\t\r":
        assert ch not in out
    assert yaml.safe_load(out) == {"k": text}


def test_dump_never_writes_aliases_or_tags() -> None:
    shared = ["x", {"y": "z"}]
    out = dump({"a": shared, "b": shared, "c": shared})
    assert "&" not in out and "*" not in out and "!" not in out
    assert load(out) == {"a": shared, "b": shared, "c": shared}


def test_dump_ends_with_exactly_one_newline() -> None:
    for value in [{"a": "x\n\n\n"}, ["x\n"], "x\n\n", {"a": {"b": ["t\n\n"]}}, {"n": "a\n"}]:
        out = dump(value)
        assert out.endswith("\n") and not out.endswith("\n\n")
        assert load(out) == value


def test_long_keys_use_explicit_syntax() -> None:
    value = {"k" * 1500: "v", "short": {"n" * 1200: ["x"]}}
    out = dump(value)
    assert "? " in out
    assert load(out) == value
    assert yaml.safe_load(out) == value


def test_dump_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        dump({1: "x"})
    with pytest.raises(TypeError):
        dump({"a": object()})
    with pytest.raises(ValueError):
        dump(float("nan"))


def test_sample_form_round_trips() -> None:
    value = sample_form()
    defs: dict[str, Any] = {}
    schema = schema_for(value, defs)
    assert coerce(load(dump(value)), schema, defs.__getitem__) == value


# ------------------------------------------------------ property tests


def schema_for(value: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """A schema stating the actual types of `value`; every other node goes through $ref."""
    if value is None:
        schema: dict[str, Any] = {"type": "null"}
    elif isinstance(value, bool):
        schema = {"type": "boolean"}
    elif isinstance(value, int):
        schema = {"type": "integer"}
    elif isinstance(value, str):
        schema = {"type": "string"}
    elif isinstance(value, list):
        schema = {"type": "array", "prefixItems": [schema_for(v, defs) for v in value]}
    else:
        schema = {
            "type": "object",
            "properties": {k: schema_for(v, defs) for k, v in value.items()},
            "additionalProperties": False,
        }
    # Every other node is reached through a $ref, to exercise resolve on the way back.
    defs.setdefault("#count", 0)
    defs["#count"] += 1
    if defs["#count"] % 2:
        ref = f"urn:test:schema#/$defs/n{defs['#count']}"
        defs[ref] = schema
        return {"$ref": ref}
    return schema


_REFUSED = (
    set(range(0x00, 0x09))
    | {0x0B, 0x0C}
    | set(range(0x0E, 0x20))
    | set(range(0x7F, 0xA0))
    | set(range(0x202A, 0x202F))
    | set(range(0x2066, 0x206A))
    | {0xFEFF, 0xFFFE, 0xFFFF}
)

TRICKY = [
    *TRAPS,
    "Y",
    "<<",
    "=",
    "- a",
    "a: b",
    "a #b",
    "#x",
    "[x]",
    "{x}",
    "&a",
    "*a",
    "!t",
    "|",
    "> x",
    "%x",
    "@x",
    "'q'",
    '"q"',
    "a\nb",
    "a\n",
    "a\n\n",
    "\n",
    "\n\n",
    "\na",
    " a",
    "a ",
    "a \nb",
    "\tx",
    "x\ty",
    "---",
    "...",
    "--- x",
    "a\r\nb",
    "\r",
    "\u2028",
    "x\u2029y",
    "é",
    "Zoë Müller",
    CANARY,
    "k" * 1100,
    "?",
    ":",
    "-",
    "a:b",
    "a,b",
    "line one\n  two\n\nthree\n",
    "  \n",
    "x\n \n",
    "\\",
    '"',
    "'",
    "# c\nd",
]

text_strategy = st.one_of(
    st.sampled_from(TRICKY),
    st.text(
        st.characters(
            codec="utf-8",
            exclude_categories=["Cs"],
            exclude_characters="".join(map(chr, _REFUSED)),
        ),
        max_size=30,
    ).map(lambda s: unicodedata.normalize("NFC", s)),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1),
    text_strategy,
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(text_strategy, inner, max_size=4),
    ),
    max_leaves=20,
)
strings_only = st.recursive(
    text_strategy,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(text_strategy, inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_like)
def test_round_trip_through_the_schema(value: Any) -> None:
    out = dump(value)
    assert out.endswith("\n") and not out.endswith("\n\n")
    defs: dict[str, Any] = {}
    schema = schema_for(value, defs)
    assert coerce(load(out), schema, defs.__getitem__) == value
    assert yaml.load(out, Loader=yaml.CSafeLoader) == value  # a YAML 1.1 reader agrees


@settings(max_examples=200, deadline=None)
@given(strings_only)
def test_all_strings_round_trip_without_a_schema(value: Any) -> None:
    assert load(dump(value)) == value


_YAMLISH = st.text(alphabet="[]{}:-?&*!|>'\"#%@`,. \n\t\r~abcNOyes019\\", max_size=200)


def _only_clean_errors(data: bytes | str) -> None:
    try:
        load(data, max_bytes=4000)
    except (ParseError, TooLarge) as exc:
        message = str(exc)
        assert CANARY not in message
        assert message.isprintable()


@settings(max_examples=200, deadline=1000)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_fail_cleanly(data: bytes) -> None:
    _only_clean_errors(data)
    _only_clean_errors(data + CANARY.encode() + data)


@settings(max_examples=200, deadline=1000)
@given(st.one_of(st.text(max_size=600), _YAMLISH))
def test_arbitrary_text_fails_cleanly(text: str) -> None:
    _only_clean_errors(text)
    _only_clean_errors(text + CANARY + text)
    _only_clean_errors(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=200, deadline=1000)
@given(_YAMLISH, _YAMLISH)
def test_arbitrary_yaml_with_canary_fails_cleanly(head: str, tail: str) -> None:
    _only_clean_errors(f"{head}{CANARY}{tail}")
    _only_clean_errors(f"k: {head}\n  {CANARY}: {tail}")


# ------------------------------------------------------------ module rules


def test_imports_only_stdlib_yaml_and_errors() -> None:
    source = Path(yamlio.__file__).read_text(encoding="utf-8")
    allowed = {
        "__future__",
        "contextlib",
        "json",
        "math",
        "re",
        "unicodedata",
        "collections.abc",
        "typing",
        "yaml",
        "cmgit.errors",
    }
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= allowed
        elif isinstance(node, ast.ImportFrom):
            assert node.module in allowed
