"""Safe YAML in, canonical YAML out.

People type forms as YAML, so everything here treats its input as hostile: the text is
checked before parsing, the parser runs at the event level so that anchors, aliases,
tags, duplicate keys and deep nesting are refused before anything is built, and no
scalar is typed by YAML's rules. A plain (unquoted) scalar comes back as `Plain` and
`coerce` lets the JSON Schema decide what it becomes ("the schema decides").

Error messages are built from fixed phrases plus line and column only: they never quote
the input, because the input is a child-protection record.

Pure: no files, no clock, no environment.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cmgit.errors import ParseError, TooLarge

__all__ = ["IDENTIFIER", "MAX_DEPTH", "YAML11_WORDS", "Plain", "coerce", "dump", "load", "scalar"]

MAX_DEPTH = 32
"""Deepest nesting of mappings and sequences that `load` accepts; forms need 4 or 5."""


def _yaml() -> Any:
    """PyYAML, imported on first use: a command that parses no YAML (the configuration is
    remembered parsed) starts without it, a tenth of a move's time."""
    import yaml

    return yaml


def _loader() -> Any:
    # libyaml is both fast and free of the pure-Python scanner's habit of quoting the
    # offending character in its messages; the pure-Python parser is only a fallback for
    # an installation without it and produces the same events.
    yaml = _yaml()
    return getattr(yaml, "CBaseLoader", yaml.BaseLoader)


class Plain(str):
    """A scalar written plain (unquoted) in the source; `coerce` decides its type."""

    __slots__ = ()


# --------------------------------------------------------------------------- load

# Characters refused anywhere in the text: C0 controls other than TAB, LF and CR; DEL
# and the C1 controls; bidi embeddings, overrides and isolates (they make text read
# differently from what it is, e.g. in an ID); U+FEFF; the two non-characters YAML
# calls unprintable; and lone surrogates, which a str argument can carry.
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff]"
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _position(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of character offset `pos`, counting breaks as YAML does."""
    breaks = list(_LINE_BREAK.finditer(text, 0, pos))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, pos - start + 1


def _byte_position(data: bytes, pos: int) -> tuple[int, int]:
    """1-based line and character column of byte offset `pos` in undecoded input."""
    prefix = data[:pos].decode("utf-8", "replace")
    return _position(prefix, len(prefix))


def _at(what: str, reason: str, line: int, column: int) -> ParseError:
    return ParseError(f"{what}: {reason} at line {line}, column {column}")


def _char_reason(ch: str) -> str:
    # Fixed phrases only: naming the code point would already describe the content.
    code = ord(ch)
    if code == 0:
        return "NUL character"
    if 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069:
        return "bidirectional text control character"
    if code == 0xFEFF:
        return "byte-order mark (U+FEFF)"
    if 0xD800 <= code <= 0xDFFF:
        return "unpaired surrogate"
    if code in (0xFFFE, 0xFFFF):
        return "non-character"
    return "control character"


def _decode(data: bytes | str, what: str, max_bytes: int) -> str:
    """Size-check, decode and screen the text; the parser only ever sees clean UTF-8."""
    if isinstance(data, str):
        # A str is measured in UTF-8 bytes too, so the limit means the same for both.
        if len(data) > max_bytes or (
            not data.isascii() and len(data.encode("utf-8", "surrogatepass")) > max_bytes
        ):
            raise TooLarge(f"{what}: larger than {max_bytes} bytes")
        text = data
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise TooLarge(f"{what}: larger than {max_bytes} bytes")
        if raw.startswith(b"\xef\xbb\xbf"):
            raise _at(what, "UTF-8 byte-order mark (save the file as UTF-8 without BOM)", 1, 1)
        if raw.startswith(_UTF16_32_BOMS):
            raise _at(what, "UTF-16 or UTF-32 text (save the file as UTF-8)", 1, 1)
        nul = raw.find(b"\x00")
        if nul >= 0:
            # NUL bytes in the first few bytes are the signature of UTF-16/32 without BOM.
            utf16 = "UTF-16 or UTF-32 text (save the file as UTF-8)"
            reason = utf16 if nul < 4 else "NUL character"
            raise _at(what, reason, *_byte_position(raw, nul))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _at(what, "text is not valid UTF-8", *_byte_position(raw, exc.start)) from None
    else:
        raise TypeError("load() takes bytes or str")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        pos = bad.start()
        reason = _char_reason(bad.group())
        if pos == 0 and bad.group() == "\ufeff":
            reason = "UTF-8 byte-order mark (save the file as UTF-8 without BOM)"
        raise _at(what, reason, *_position(text, pos))
    return text


# Parser problem texts are fixed phrases in libyaml, but the pure-Python scanner puts
# %r of the offending character into some of them. Quoted parts survive only when they
# are YAML punctuation (":", ",", "]"...) or a token name such as <document start>.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_SAFE_QUOTED = re.compile(r"""['"](?:[^\w\s'"]{1,3}|<[a-z -]{1,30}>)['"]""")
_SAFE_PHRASE = re.compile(r"[A-Za-z][ -~]{0,119}")


def _phrase(problem: object) -> str:
    if not isinstance(problem, str):
        return "invalid YAML"
    text = _QUOTED.sub(lambda m: m.group() if _SAFE_QUOTED.fullmatch(m.group()) else "", problem)
    text = " ".join(text.split())
    return text if _SAFE_PHRASE.fullmatch(text) else "invalid YAML"


def _from_yaml_error(exc: Exception, what: str, text: str) -> ParseError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
        return ParseError(
            f"{what}: YAML syntax error at line {line}, column {column}: {_phrase(problem)}"
        )
    position = getattr(exc, "position", None)
    if isinstance(position, int) and 0 <= position <= len(text):
        return _at(what, "YAML syntax error", *_position(text, position))
    return ParseError(f"{what}: YAML syntax error")


def _refuse(what: str, reason: str, event: Any) -> NoReturn:
    mark = event.start_mark
    raise _at(what, reason, mark.line + 1, mark.column + 1)


_NO_KEY: Any = object()  # a mapping frame waiting for its next key


def _build(parser: Any, what: str) -> Any:
    """Build dicts, lists and strings from the parser's events, refusing as we go.

    Iterative, so depth costs no Python stack; every refusal happens on the event that
    introduces the feature, so an alias bomb stops at its first anchor.
    """
    get_event = parser.get_event
    normalize = unicodedata.normalize
    yaml = _yaml()
    scalar, alias = yaml.ScalarEvent, yaml.AliasEvent
    mapping_start, mapping_end = yaml.MappingStartEvent, yaml.MappingEndEvent
    sequence_start, sequence_end = yaml.SequenceStartEvent, yaml.SequenceEndEvent
    document_start, stream_end = yaml.DocumentStartEvent, yaml.StreamEndEvent
    stack: list[Any] = []  # open containers, innermost last
    keys: list[Any] = []  # per open mapping: the key awaiting its value, or _NO_KEY
    root: Any = None
    documents = 0
    while True:
        event = get_event()
        cls = event.__class__
        if cls is scalar:
            if event.anchor is not None:
                _refuse(what, "anchors are not allowed", event)
            # The parser reports tag None for every untagged scalar, plain or quoted;
            # anything else (including a written "!") is an explicit tag.
            if event.tag is not None:
                _refuse(what, "tags are not allowed", event)
            value = event.value
            style = event.style
            # Escapes in double quotes can produce characters the text check refused.
            if style == '"' and _FORBIDDEN.search(value) is not None:
                _refuse(what, "escaped control character is not allowed", event)
            if not value.isascii():
                value = normalize("NFC", value)
            if not stack:
                # A document that is just an empty plain scalar ("---") is empty.
                root = (Plain(value) if value else None) if not style else value
                continue
            top = stack[-1]
            if top.__class__ is dict:
                key = keys[-1]
                if key is _NO_KEY:
                    if value in top:
                        _refuse(what, "duplicate key", event)
                    keys[-1] = value
                    continue
                top[key] = value if style else Plain(value)
                keys[-1] = _NO_KEY
            else:
                top.append(value if style else Plain(value))
        elif cls is mapping_start or cls is sequence_start:
            if event.anchor is not None:
                _refuse(what, "anchors are not allowed", event)
            if event.tag is not None:
                _refuse(what, "tags are not allowed", event)
            if len(stack) >= MAX_DEPTH:
                _refuse(what, f"nesting deeper than {MAX_DEPTH} levels", event)
            new: Any = {} if cls is mapping_start else []
            if not stack:
                root = new
            else:
                top = stack[-1]
                if top.__class__ is dict:
                    key = keys[-1]
                    if key is _NO_KEY:
                        _refuse(what, "a mapping key must be a single value", event)
                    top[key] = new
                    keys[-1] = _NO_KEY
                else:
                    top.append(new)
            stack.append(new)
            keys.append(_NO_KEY)
        elif cls is mapping_end or cls is sequence_end:
            stack.pop()
            keys.pop()
        elif cls is alias:
            _refuse(what, "aliases are not allowed", event)
        elif cls is document_start:
            documents += 1
            if documents > 1:
                _refuse(what, "more than one document", event)
        elif cls is stream_end or event is None:
            return root
        # StreamStart and DocumentEnd carry nothing.


def load(data: bytes | str, *, what: str = "input", max_bytes: int = 1_048_576) -> Any:
    """Parse one YAML document safely into dicts, lists, `Plain` and str (or None).

    Refuses (ParseError) anything but clean UTF-8 text, anchors, aliases, tags,
    duplicate or non-scalar keys, several documents and nesting deeper than MAX_DEPTH;
    refuses (TooLarge) more than `max_bytes`. Strings are NFC-normalised.
    """
    text = _decode(data, what, max_bytes)
    loader = _loader()
    try:
        # Bytes go to the parser as they are (already checked): it saves an encode.
        return _parse(loader, data if isinstance(data, bytes) else text, what)
    except _ParserFailed as failed:
        cause = failed.cause
    error = _from_yaml_error(cause, what, text)
    if loader is not _yaml().BaseLoader and _may_nest_in_flow(text, cause):
        # Inside "[" and "{" libyaml's scanner reads ahead of the events, so its own limits
        # (a nesting depth since libyaml 0.2.5) can fail the text before `_build` sees the
        # event that cmgit refuses first. The pure-Python parser has no such limit: replayed
        # on the text up to the failure, it finds cmgit's refusal whatever the version.
        with contextlib.suppress(_ParserFailed):
            _parse(_yaml().BaseLoader, text[: _offset(text, cause)], what)
    raise error


class _ParserFailed(Exception):
    """The parser itself gave up (not one of cmgit's refusals)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__()
        self.cause = cause


def _parse(loader: Any, source: bytes | str, what: str) -> Any:
    parser: Any = None
    try:
        parser = loader(source)
        return _build(parser, what)
    except (_yaml().YAMLError, RecursionError, ValueError, UnicodeError) as exc:
        raise _ParserFailed(exc) from None
    finally:
        # The pure-Python fallback keeps references until disposed; libyaml's is a no-op.
        dispose = getattr(parser, "dispose", None)
        if dispose is not None:
            dispose()


def _offset(text: str, exc: Exception) -> int:
    """Where in `text` the parser failed (its end when the parser does not say)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return len(text)
    line: int = mark.line
    column: int = mark.column
    start = 0
    for _ in range(line):
        start = text.find("\n", start) + 1
        if start == 0:  # line breaks other than LF: the whole text, to be safe
            return len(text)
    return min(len(text), start + column + 1)


def _may_nest_in_flow(text: str, exc: Exception) -> bool:
    # Flow nesting deeper than MAX_DEPTH needs more than MAX_DEPTH openers before the
    # failure: a count that spares ordinary syntax errors the slower replay.
    head = text[: _offset(text, exc)]
    return head.count("[") + head.count("{") > MAX_DEPTH


# ------------------------------------------------------------------------- coerce

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?")
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "null", "object", "array"})
_MAX_COERCE_DEPTH = 4 * MAX_DEPTH  # values from load() are far shallower


def _type_set(spec: object) -> frozenset[str] | None:
    if isinstance(spec, str):
        names = {spec}
    elif isinstance(spec, list):
        names = {t for t in spec if isinstance(t, str)}
    else:
        return None
    # Every integer is a number, so "number" admits the integer reading too; this keeps
    # intersections such as number and integer right.
    if "number" in names:
        names.add("integer")
    return frozenset(names & _JSON_TYPES)


def _value_types(values: list[Any]) -> frozenset[str]:
    names: set[str] = set()
    for v in values:
        if v is None:
            names.add("null")
        elif isinstance(v, bool):
            names.add("boolean")
        elif isinstance(v, int):
            names.update(("integer", "number"))
        elif isinstance(v, float):
            names.add("number")
            if v.is_integer():
                names.add("integer")
        elif isinstance(v, str):
            names.add("string")
        elif isinstance(v, Mapping):
            names.add("object")
        elif isinstance(v, list):
            names.add("array")
    return frozenset(names)


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """Both constraints hold (None = unconstrained)."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _is_map(x: object) -> bool:
    # Schemas are almost always plain dicts; the ABC check is the slow path.
    return x.__class__ is dict or isinstance(x, Mapping)


def _allowed(
    schema: Any,
    resolve: Callable[[str], Mapping[str, Any]],
    chain: frozenset[str],
    enum: list[Any],
) -> frozenset[str] | None:
    """The JSON types a schema allows at one position (None: it says nothing).

    Conjunctive keywords ("type", "enum"/"const", "$ref", "allOf") intersect; "anyOf" and
    "oneOf" contribute the union of the branches that say something. Enum and const
    values are collected into `enum` so the caller can prefer a reading they contain.
    `chain` holds the $refs followed to get here: a cycle stops where it closes.
    """
    if not _is_map(schema):
        return None  # a boolean schema (or junk) constrains no type
    get = schema.get
    result = _type_set(get("type"))
    if "const" in schema:
        enum.append(schema["const"])
        result = _meet(result, _value_types([schema["const"]]))
    values = get("enum")
    if isinstance(values, list):
        enum.extend(values)
        result = _meet(result, _value_types(values))
    ref = get("$ref")
    if isinstance(ref, str) and ref not in chain:
        result = _meet(result, _allowed(resolve(ref), resolve, chain | {ref}, enum))
    branches = get("allOf")
    if isinstance(branches, list):
        for branch in branches:
            result = _meet(result, _allowed(branch, resolve, chain, enum))
    for keyword in ("anyOf", "oneOf"):
        branches = get(keyword)
        if isinstance(branches, list):
            said = [
                t for t in (_allowed(b, resolve, chain, enum) for b in branches) if t is not None
            ]
            if said:
                result = _meet(result, frozenset().union(*said))
    return result


def _child(
    schema: Any,
    key: str | int,
    resolve: Callable[[str], Mapping[str, Any]],
    chain: frozenset[str],
) -> Any:
    """The subschema for one member (str key) or item (int index), or None.

    Several applicable subschemas are combined into a synthetic allOf/anyOf that mirrors
    the keyword they came from, so `_allowed` treats them with the same logic.
    """
    if not _is_map(schema):
        return None
    get = schema.get
    parts: list[Any] = []
    if isinstance(key, str):
        props = get("properties")
        if props is not None and _is_map(props) and key in props:
            parts.append(props[key])
        else:
            matched = False
            patterns = get("patternProperties")
            if patterns is not None and _is_map(patterns):
                for pattern, sub in patterns.items():
                    if re.search(pattern, key):
                        parts.append(sub)
                        matched = True
            extra = get("additionalProperties")
            if not matched and extra is not None and _is_map(extra):
                parts.append(extra)
    else:
        prefix = get("prefixItems")
        if isinstance(prefix, list) and key < len(prefix):
            parts.append(prefix[key])
        else:
            items = get("items")
            if items is not None and _is_map(items):
                parts.append(items)
    ref = get("$ref")
    if isinstance(ref, str) and ref not in chain:
        sub = _child(resolve(ref), key, resolve, chain | {ref})
        if sub is not None:
            parts.append(sub)
    branches = get("allOf")
    if isinstance(branches, list):
        for branch in branches:
            sub = _child(branch, key, resolve, chain)
            if sub is not None:
                parts.append(sub)
    for keyword in ("anyOf", "oneOf"):
        branches = get(keyword)
        if isinstance(branches, list):
            subs = [s for s in (_child(b, key, resolve, chain) for b in branches) if s is not None]
            if subs:
                parts.append({"anyOf": subs})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"allOf": parts}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    return "string" if isinstance(v, str) else "other"


def _convert(text: str, types: frozenset[str] | None, enum: list[Any]) -> Any:
    if types is None:
        return text
    is_null = "null" in types and text in _NULLS
    readings: list[Any] = []
    if "string" in types and not is_null:
        readings.append(text)
    if "integer" in types and _INTEGER.fullmatch(text):
        readings.append(int(text))
    if "boolean" in types and (text in _TRUE or text in _FALSE):
        readings.append(text in _TRUE)
    if is_null:
        readings.append(None)
    if "number" in types:
        match = _DECIMAL.fullmatch(text)
        if match:
            readings.append(float(text) if match.group(1) else int(text))
    if not readings:
        return text  # validation will report the mismatch, without the value
    if enum:
        # A mixed enum such as [1, "a"] allows both readings; take the one it contains.
        for reading in readings:
            kind = _kind(reading)
            if any(_kind(e) == kind and e == reading for e in enum):
                return reading
    return readings[0]


_NO_REFS: frozenset[str] = frozenset()


class _Coercer:
    """One coerce() call: the resolver, the input's name and a memo of position types."""

    def __init__(self, resolve: Callable[[str], Mapping[str, Any]], what: str) -> None:
        self.resolve = resolve
        self.what = what
        # id(schema) -> (schema, types, enum). Holding the schema keeps its id unique for
        # the life of the call; list items share one item schema, so this pays off there.
        self.memo: dict[int, tuple[Any, frozenset[str] | None, list[Any]]] = {}

    def scalar(self, text: str, schema: Any) -> Any:
        if schema is None:
            return text
        hit = self.memo.get(id(schema))
        if hit is None or hit[0] is not schema:
            enum: list[Any] = []
            hit = (schema, _allowed(schema, self.resolve, _NO_REFS, enum), enum)
            self.memo[id(schema)] = hit
        return _convert(text, hit[1], hit[2])

    def walk(self, value: Any, schema: Any, depth: int) -> Any:
        if isinstance(value, Plain):
            return self.scalar(str(value), schema)
        if isinstance(value, str):
            return str(value)
        if depth > _MAX_COERCE_DEPTH:
            raise ParseError(f"{self.what}: nesting deeper than {_MAX_COERCE_DEPTH} levels")
        resolve = self.resolve
        if isinstance(value, dict):
            return {
                str(k): self.walk(
                    v,
                    None if schema is None else _child(schema, str(k), resolve, _NO_REFS),
                    depth + 1,
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [
                self.walk(
                    v,
                    None if schema is None else _child(schema, i, resolve, _NO_REFS),
                    depth + 1,
                )
                for i, v in enumerate(value)
            ]
        return value


def coerce(
    value: Any,
    schema: Mapping[str, Any],
    resolve: Callable[[str], Mapping[str, Any]],
    *,
    what: str = "input",
) -> Any:
    """Give each `Plain` scalar in `value` the type the schema expects where it stands.

    A string reading wins whenever "string" is allowed, so NO, 0123, 1.10 and dates stay
    exactly as typed; integers are read only up to 18 digits; booleans only from
    true/false; nulls only from empty, ~ and null. Anything else is returned as str and
    left for schema validation to report. Never raises for a type mismatch.
    """
    return _Coercer(resolve, what).walk(value, schema, 0)


def core(value: Any) -> Any:
    """Type unquoted scalars by the YAML 1.2 core rules (true/false, null, integers):
    for data that is itself a schema or free parameters, where no schema can decide.
    Only the canonical spellings count; everything else stays a string."""
    if isinstance(value, dict):
        return {key: core(item) for key, item in value.items()}
    if isinstance(value, list):
        return [core(item) for item in value]
    if isinstance(value, Plain):
        text = str(value)
        if text in ("true", "false"):
            return text == "true"
        if text in ("null", "~", ""):
            return None
        if _INTEGER.fullmatch(text):
            return int(text)
        return text
    return value


# --------------------------------------------------------------------------- dump

# Written plain only if no YAML 1.1 or 1.2 reader can take it for anything but a string:
# starts with a letter or underscore (so never a number, date, sexagesimal, .inf or an
# indicator), then letters, digits, "_./-", with single spaces between words (so never
# ": ", " #", leading or trailing space).
_PLAIN_SAFE = re.compile(r"[^\W\d](?:[^\W\d]|[0-9./-])*(?: (?:[^\W\d]|[0-9./-])+)*")
# The words YAML 1.1 reads as a boolean or null (YAML 1.2 keeps true, false and null).
_RESERVED_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null"})
# ... in the spellings YAML 1.1 reads so: all lower case, capitalised or all upper case.
YAML11_WORDS = frozenset(
    spelling for word in _RESERVED_WORDS for spelling in (word, word.capitalize(), word.upper())
)
# Written plain in the ASCII form of `scalar`: an ASCII identifier, so never a number, a
# date, an indicator or a space (and with YAML11_WORDS left out, never a boolean or null).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Escaped inside double quotes: what JSON escapes, plus what YAML treats as a line break
# or unprintable, plus what load refuses (so it shows as an escape, not invisibly).
_NEEDS_ESCAPE = re.compile(
    '["\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff]'
)
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
# A literal block must read back exactly: no character that needs escaping (\n aside).
_NOT_IN_BLOCK = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ufeff\ufffe\uffff\ud800-\udfff]"
)
_MAX_SIMPLE_KEY = 1000  # libyaml refuses implicit keys over 1024 characters


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _SHORT_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def _quote(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def _string(text: str) -> str:
    if _PLAIN_SAFE.fullmatch(text) and text.lower() not in _RESERVED_WORDS:
        return text
    return _quote(text)


def scalar(value: Any, *, ascii_json: bool = False) -> str:
    """One scalar in canonical form: the one writer of scalars, for `dump` and record files.

    By default as `dump` writes it, for people: text in any script, a string plain
    wherever no YAML reader could take it for another type. With ``ascii_json``, in the
    stricter form a record file's open fields take, which reads alike as YAML and as JSON
    and is ASCII only: a string plain only when it is an `IDENTIFIER` outside
    `YAML11_WORDS`, else a JSON string; a list of strings as a JSON array; no float.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if ascii_json:
        if isinstance(value, str):
            if IDENTIFIER.fullmatch(value) and value not in YAML11_WORDS:
                return value
            return json.dumps(value, ensure_ascii=True)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return json.dumps(value, ensure_ascii=True)
        raise TypeError(f"cannot write a {type(value).__name__} in the ASCII JSON form")
    if isinstance(value, float):
        # Outside the round-trip promise (coerce reads back plain decimals only), but
        # written exactly rather than refused; NaN and infinities have no JSON form.
        if not math.isfinite(value):
            raise ValueError("dump() cannot write an infinite or NaN number")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"dump() cannot write a {type(value).__name__}")


def _block_chomping(text: str, last: bool) -> str | None:
    """The literal-block header for `text`, or None when it must be double-quoted."""
    if "\n" not in text or _NOT_IN_BLOCK.search(text):
        return None
    body = text.rstrip("\n")
    if not body:
        return None
    lines = body.split("\n")
    first = next(line for line in lines if line)
    if first.startswith(" ") or any(
        line.startswith("\t") or line.endswith((" ", "\t")) for line in lines
    ):
        # A leading space on the first line would be taken for indentation, a leading
        # tab looks like indentation to a reader, and trailing blanks are invisible.
        return None
    trailing = len(text) - len(body)
    if trailing == 0:
        return "|-"
    if trailing == 1:
        return "|"
    # Kept trailing empty lines at the very end would end the output with a blank line.
    return None if last else "|+"


def _emit(value: Any, head: str, indent: str, last: bool, out: list[str]) -> None:
    """Append `value` as the node that follows `head` ("key:" or "-", already indented)."""
    if isinstance(value, dict):
        if not value:
            out.append(f"{head} {{}}")
        else:
            out.append(head)
            _emit_mapping(value, indent + "  ", last, out)
    elif isinstance(value, list | tuple):
        if not value:
            out.append(f"{head} []")
        else:
            out.append(head)
            _emit_sequence(value, indent + "  ", last, out)
    elif isinstance(value, str) and (chomping := _block_chomping(value, last)) is not None:
        out.append(f"{head} {chomping}")
        inner = indent + "  "
        body = value.rstrip("\n")
        out.extend(inner + line if line else "" for line in body.split("\n"))
        out.extend("" for _ in range(len(value) - len(body) - 1))
    else:
        out.append(f"{head} {scalar(value)}")


def _emit_mapping(mapping: dict[Any, Any], indent: str, last: bool, out: list[str]) -> None:
    final = len(mapping) - 1
    for i, (key, value) in enumerate(mapping.items()):
        if not isinstance(key, str):
            raise TypeError("dump() writes only str mapping keys")
        text = _string(key)
        if len(text) > _MAX_SIMPLE_KEY:
            out.append(f"{indent}? {text}")
            head = f"{indent}:"
        else:
            head = f"{indent}{text}:"
        _emit(value, head, indent, last and i == final, out)


def _emit_sequence(
    items: list[Any] | tuple[Any, ...], indent: str, last: bool, out: list[str]
) -> None:
    final = len(items) - 1
    for i, item in enumerate(items):
        is_last = last and i == final
        if isinstance(item, dict | list | tuple) and item:
            # Compact form "- key: v" / "- - v": write the node one level in, then put
            # the dash into the indentation of its first line.
            start = len(out)
            if isinstance(item, dict):
                _emit_mapping(item, indent + "  ", is_last, out)
            else:
                _emit_sequence(item, indent + "  ", is_last, out)
            out[start] = f"{indent}- {out[start][len(indent) + 2 :]}"
        else:
            _emit(item, f"{indent}-", indent, is_last, out)


def dump(value: Any) -> str:
    """Canonical block-style YAML for people; `load` reads it back.

    Keys keep the dict's order; strings are plain only where no YAML reader could
    mistake them for another type; narratives become literal blocks. No anchors, no
    tags, no document markers; ends with exactly one newline.
    """
    out: list[str] = []
    if isinstance(value, dict) and value:
        _emit_mapping(value, "", True, out)
    elif isinstance(value, list | tuple) and value:
        _emit_sequence(value, "", True, out)
    elif isinstance(value, dict):
        out.append("{}")
    elif isinstance(value, list | tuple):
        out.append("[]")
    elif isinstance(value, str) and (chomping := _block_chomping(value, True)) is not None:
        out.append(chomping)
        body = value.rstrip("\n")
        out.extend("  " + line if line else "" for line in body.split("\n"))
    else:
        out.append(scalar(value))
    return "\n".join(out) + "\n"
