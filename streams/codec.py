"""Avro with Confluent framing, and the embedded schema registry.

A frame is the magic byte 0x00, the writer's schema id (4 bytes, big-endian),
then the Avro binary body. Schemas are parsed once, when the registry loads;
the hot path is fastavro's schemaless reader and writer.

Decoding resolves the writer's schema (named by the frame) to the reader's
(the newest version of the subject this code knows), so old and new producers
can both be read. Logical types are read as their underlying numbers
(timestamp-millis as epoch milliseconds, and so on): see `streams.model`.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastavro

from streams.errors import (
    BadMagicByteError,
    BodyMismatchError,
    EncodeError,
    SchemaError,
    TruncatedFrameError,
    UnknownSchemaIdError,
    WrongSubjectError,
)

MAGIC_BYTE = 0
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size


def _schemas_dir() -> Path:
    """The contract's schemas: the repository's `schemas/` (a checkout, an editable
    install), else the copy a wheel installs under `<prefix>/share/passerelle/schemas`."""
    checkout = Path(__file__).resolve().parent.parent / "schemas"
    if (checkout / "registry.json").exists():
        return checkout
    return Path(sys.prefix) / "share" / "passerelle" / "schemas"


DEFAULT_SCHEMAS_DIR = _schemas_dir()


@dataclass(frozen=True)
class SchemaVersion:
    """One registered schema: its pinned id, subject, version, and parsed forms."""

    id: int
    subject: str
    version: int
    definition: Mapping[str, Any]
    """The schema as written in `schemas/`, logical types included."""
    parsed: Any
    """fastavro's parsed schema with logical types read as plain numbers."""


class Registry(Protocol):
    """Where schema ids resolve. The embedded registry is the default."""

    def by_id(self, schema_id: int) -> SchemaVersion: ...

    def latest(self, subject: str) -> SchemaVersion: ...

    def versions(self, subject: str) -> list[SchemaVersion]: ...

    def compatibility(self, subject: str) -> str: ...


class EmbeddedRegistry:
    """The registry described by `schemas/registry.json`: ids pinned, every version kept."""

    def __init__(self, versions: list[SchemaVersion], compatibility: Mapping[str, str]) -> None:
        self._by_id = {v.id: v for v in versions}
        self._by_subject: dict[str, list[SchemaVersion]] = {}
        for v in sorted(versions, key=lambda v: (v.subject, v.version)):
            self._by_subject.setdefault(v.subject, []).append(v)
        self._compatibility = dict(compatibility)

    @classmethod
    def load(cls, directory: Path | None = None) -> EmbeddedRegistry:
        """Parse every schema named in `<directory>/registry.json`; fail fast on any fault."""
        root = directory or DEFAULT_SCHEMAS_DIR
        index = _read_json(root / "registry.json")
        versions: list[SchemaVersion] = []
        seen: set[tuple[str, int]] = set()
        for entry in index["schemas"]:
            key = (entry["subject"], entry["version"])
            if key in seen or any(v.id == entry["id"] for v in versions):
                raise SchemaError(f"registry.json repeats id {entry['id']} or {key}")
            seen.add(key)
            definition = _read_json(root / entry["file"])
            name = f"{definition.get('namespace', '')}.{definition.get('name', '')}"
            if name != entry["subject"]:
                raise SchemaError(f"{entry['file']} defines {name}, not {entry['subject']}")
            versions.append(
                SchemaVersion(
                    id=entry["id"],
                    subject=entry["subject"],
                    version=entry["version"],
                    definition=definition,
                    parsed=parse(definition),
                )
            )
        subjects = index["subjects"]
        missing = {v.subject for v in versions} - subjects.keys()
        if missing:
            raise SchemaError(f"registry.json has no compatibility for {sorted(missing)}")
        return cls(versions, {s: c["compatibility"] for s, c in subjects.items()})

    def by_id(self, schema_id: int) -> SchemaVersion:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaIdError(f"schema id {schema_id} is not registered") from None

    def latest(self, subject: str) -> SchemaVersion:
        return self.versions(subject)[-1]

    def versions(self, subject: str) -> list[SchemaVersion]:
        try:
            return self._by_subject[subject]
        except KeyError:
            raise SchemaError(f"no schema registered for subject {subject}") from None

    def subjects(self) -> list[str]:
        return sorted(self._by_subject)

    def compatibility(self, subject: str) -> str:
        return self._compatibility[subject]


def parse(definition: Mapping[str, Any]) -> Any:
    """fastavro's parsed form of a schema, its logical types read as plain numbers."""
    try:
        return fastavro.parse_schema(_without_logical_types(definition), named_schemas={})
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        raise SchemaError(f"schema {definition.get('name')!r} does not parse: {exc}") from exc


class Codec:
    """Encodes and decodes framed Avro records against one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def encode(
        self, subject: str, record: Mapping[str, Any], schema_id: int | None = None
    ) -> bytes:
        """Frame and encode with the subject's newest schema, or the pinned `schema_id`."""
        schema = self.registry.by_id(schema_id) if schema_id else self.registry.latest(subject)
        if schema.subject != subject:
            raise WrongSubjectError(f"schema id {schema.id} is {schema.subject}, not {subject}")
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC_BYTE, schema.id))
        try:
            fastavro.schemaless_writer(buffer, schema.parsed, record)
        except Exception as exc:  # fastavro raises Type/Value/Key/Attribute errors alike
            raise EncodeError(
                f"record does not fit {subject}: {_fields_at_fault(schema, record)}"
            ) from exc
        return buffer.getvalue()

    def decode(self, subject: str, frame: bytes) -> dict[str, Any]:
        """Decode a frame written with any version of `subject`, read as its newest version."""
        writer = self._writer(frame)
        if writer.subject != subject:
            raise WrongSubjectError(f"schema id {writer.id} is {writer.subject}, not {subject}")
        return self._read(frame, writer, self.registry.latest(subject))

    def subject_of(self, frame: bytes) -> str:
        """The subject a frame's schema id names, without decoding its body."""
        return self._writer(frame).subject

    def decode_any(self, frame: bytes) -> tuple[str, dict[str, Any]]:
        """Decode a frame of whatever subject it names (a topic with several record types)."""
        writer = self._writer(frame)
        return writer.subject, self._read(frame, writer, self.registry.latest(writer.subject))

    def _writer(self, frame: bytes) -> SchemaVersion:
        if len(frame) < HEADER_SIZE:
            raise TruncatedFrameError(f"frame of {len(frame)} bytes is shorter than its header")
        magic, schema_id = _HEADER.unpack_from(frame)
        if magic != MAGIC_BYTE:
            raise BadMagicByteError(f"magic byte is {magic:#04x}, expected 0x00")
        return self.registry.by_id(schema_id)

    @staticmethod
    def _read(frame: bytes, writer: SchemaVersion, reader: SchemaVersion) -> dict[str, Any]:
        body = io.BytesIO(frame)
        body.seek(HEADER_SIZE)
        reader_schema = None if reader.id == writer.id else reader.parsed
        try:
            record = fastavro.schemaless_reader(body, writer.parsed, reader_schema)
        except Exception as exc:
            # Not chained: some decoder errors quote the offending payload bytes.
            raise BodyMismatchError(
                f"body does not decode as {writer.subject} v{writer.version} ({type(exc).__name__})"
            ) from None
        if body.tell() != len(frame):
            raise BodyMismatchError(
                f"body has {len(frame) - body.tell()} bytes left over after "
                f"{writer.subject} v{writer.version}"
            )
        if not isinstance(record, dict):
            raise BodyMismatchError(
                f"{writer.subject} v{writer.version} did not decode to a record"
            )
        return record


def _fields_at_fault(schema: SchemaVersion, record: Mapping[str, Any]) -> str:
    """What does not fit, field by field (missing, or the type expected and the type
    given), without the values: an error may be logged, and values can be personal."""
    if not isinstance(record, Mapping):
        return f"a record is a mapping of fields, not a {type(record).__name__}"
    faults = [f for f in (_fault(field, record) for field in schema.definition["fields"]) if f]
    return "; ".join(faults) if faults else "a value has the wrong type"


def _fault(field: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    name = field["name"]
    types = field["type"] if isinstance(field["type"], list) else [field["type"]]
    if name not in record:
        return None if "default" in field else f"field {name}: missing ({_expected(types)})"
    value = record[name]
    if any(_fits(t, value) for t in types):
        return None
    if any(isinstance(t, Mapping) and t.get("type") == "enum" for t in types):
        return f"field {name}: must be {_expected(types)}"
    return f"field {name}: expected {_expected(types)}, got {type(value).__name__}"


_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "string": (str,),
    "bytes": (bytes,),
}


def _fits(avro: Any, value: Any) -> bool:
    """Whether a value can be written as this Avro type (shallow: a nested record or a
    named type is taken as fitting; the writer checks it)."""
    if isinstance(avro, str):
        kinds = _PRIMITIVES.get(avro)
        if kinds is None:
            return True  # a named type defined elsewhere in the schema
        return isinstance(value, kinds) and (avro == "boolean" or not isinstance(value, bool))
    kind = avro.get("type")
    if kind == "enum":
        return value in avro["symbols"]
    if kind == "array":
        return isinstance(value, list)
    if kind in ("record", "map"):
        return isinstance(value, Mapping)
    return _fits(kind, value)  # a primitive with a logical type


def _expected(types: list[Any]) -> str:
    def one(avro: Any) -> str:
        if isinstance(avro, str):
            return avro
        if avro.get("type") == "enum":
            return "one of " + ", ".join(avro["symbols"])
        if "logicalType" in avro:
            return f"{avro['type']} ({avro['logicalType']})"
        return str(avro.get("type"))

    return " or ".join(one(t) for t in types)


def _without_logical_types(node: Any) -> Any:
    """The same schema with every `logicalType` annotation dropped (the wire is unchanged)."""
    if isinstance(node, Mapping):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(item) for item in node]
    return node


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaError(f"schema file {path} is missing") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not valid JSON: {exc}") from None
