"""One root exception for the project, and small documented leaves.

Every error says whether retrying can help (`retriable`). Codec errors carry a
`reason` code: the value of the DLQ `reason` header. No message ever carries
payload bytes, account numbers, psids or amounts.
"""

from __future__ import annotations


class PasserelleError(Exception):
    """Root of every error Passerelle raises on purpose."""

    retriable: bool = False


class SettingsError(PasserelleError):
    """An environment variable is missing or malformed."""


class LocalKafkaError(PasserelleError):
    """The local broker could not be fetched, formatted, started or reached."""


class TopicProvisionError(PasserelleError):
    """The broker refused to create a catalog topic."""


class TopicConflictError(TopicProvisionError):
    """A topic exists with a shape (partitions) the catalog does not allow."""


class MissingTopicError(PasserelleError):
    """A topic a command needs does not exist (the message says how to create it)."""


class KafkaUnavailableError(PasserelleError):
    """The brokers did not answer in time; trying again later may work."""

    retriable = True


class SchemaError(PasserelleError):
    """A schema file is missing, unparsable, or the registry index is wrong."""


class CodecError(PasserelleError):
    """A record could not be framed, unframed, encoded or decoded.

    `reason` is a stable code, sent as the DLQ `reason` header.
    """

    reason: str = "CODEC_ERROR"


class TruncatedFrameError(CodecError):
    """Fewer than the 5 bytes of Confluent framing (magic byte + schema id)."""

    reason = "TRUNCATED_FRAME"


class BadMagicByteError(CodecError):
    """The first byte is not the Confluent magic byte 0x00."""

    reason = "BAD_MAGIC_BYTE"


class UnknownSchemaIdError(CodecError):
    """The frame names a schema id the registry does not hold."""

    reason = "UNKNOWN_SCHEMA_ID"


class WrongSubjectError(CodecError):
    """The frame names a known schema, but of another record type."""

    reason = "WRONG_SUBJECT"


class BodyMismatchError(CodecError):
    """The Avro body does not decode with the writer schema the frame names."""

    reason = "BODY_MISMATCH"


class EncodeError(CodecError):
    """A record does not fit the schema it is written with."""

    reason = "ENCODE_ERROR"
