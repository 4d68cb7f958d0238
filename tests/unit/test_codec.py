"""The Avro contract on the wire: golden bytes, the reference implementation, typed errors."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest

from streams import model
from streams.codec import HEADER_SIZE, Codec, EmbeddedRegistry, SchemaVersion
from streams.compat import check_registry, problems
from streams.errors import (
    BadMagicByteError,
    BodyMismatchError,
    CodecError,
    EncodeError,
    SchemaError,
    TruncatedFrameError,
    UnknownSchemaIdError,
    WrongSubjectError,
)
from tests import samples

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# (name, subject, schema id, record, frame as hex). Pinned: a change here is a
# wire-format change that every bank and messaging team would see.
V1_NOTIFICATION = {k: v for k, v in samples.NOTIFICATION.items() if k != "quick_replies"}
V1_DIGEST = {k: v for k, v in samples.DIGEST.items() if k != "quick_replies"}
GOLDEN: list[tuple[str, str, int, Any, str]] = [
    (
        "transaction v1",
        model.TRANSACTION,
        1,
        samples.TRANSACTION,
        "00000000011274782d3030303030311a62616e7175652d616c70696e65364652373633303030363030"
        "3030313132333435363738393031383902021274782d30303030303000ff880f0645555280e0cfc9c468"
        "0230426f756c616e67657269652050c3a27469737369c3a87265020835343632021043422032382f3131"
        "029a870c00",
    ),
    (
        "transaction v2",
        model.TRANSACTION,
        6,
        samples.TRANSACTION,
        "00000000061274782d3030303030311a62616e7175652d616c70696e65364652373633303030363030"
        "3030313132333435363738393031383902021274782d30303030303000ff880f0645555280e0cfc9c468"
        "0230426f756c616e67657269652050c3a27469737369c3a87265020835343632021043422032382f3131"
        "029a870c0000",
    ),
    (
        "consent",
        model.CONSENT,
        2,
        samples.CONSENT,
        "00000000020c636e732d34321a62616e7175652d616c70696e6536465237363330303036303030303131"
        "3233343536373839303138392232343837313233343536373839303132331e3130353132333435363738"
        "393031320206000206008"
        "0c0b2c1fe6800000a66722d4652184575726f70652f5061726973028"
        "0fcc34b8096841802a08d0602a09c010180a698c6c468",
    ),
    (
        "notification",
        model.NOTIFICATION,
        3,
        V1_NOTIFICATION,
        "0000000003106e74662d35623164002232343837313233343536373839303132331e3130353132333435"
        "363738393031321a62616e7175652d616c70696e650c636e732d34320a66722d46526c506169656d656e"
        "742064652031203233342c353620e282ac206368657a20426f756c616e67657269652050c3a274697373"
        "69c3a872650222e280a2e280a2e280a2e280a2203031383902ff880f02064555520230426f756c616e67"
        "657269652050c3a27469737369c3a87265021267726f636572696573029a870c0080e0cfc9c468f4e3cf"
        "c9c46880d0829cc5680402020000",
    ),
    (
        "digest notification",
        model.NOTIFICATION,
        3,
        V1_DIGEST,
        "00000000030c6e74662d6431062232343837313233343536373839303132331e31303531323334353637"
        "3839303132"
        "1a62616e7175652d616c70696e650c636e732d34320a656e2d474230596f75722064"
        "61793a20e282ac31322e3530207370656e740222e280a2e280a2e280a2e280a220303138390002064555"
        "520000000214323032362d31312d3238c4130004021267726f636572696573c413000080e0cfc9c468f4"
        "e3cfc9c46880d0829cc56802000101",
    ),
    (
        "response notification v2",
        model.NOTIFICATION,
        8,
        samples.RESPONSE,
        "00000000080c6e74662d72310a2232343837313233343536373839303132331e31303531323334353637"
        "38393031321a62616e7175652d616c70696e650c636e732d34320a66722d465238566f757320706f7576"
        "657a2064656d616e646572203a20736f6c64650222e280a2e280a2e280a2e280a2203031383900020645"
        "555200021267726f636572696573029a870c0080e0cfc9c468f4e3cfc9c46880d0829cc5680000000002"
        "020a536f6c646524504153534552454c4c455f42414c414e434500",
    ),
    (
        "decision",
        model.DECISION,
        4,
        samples.DECISION,
        "00000000041a62616e7175652d616c70696e65266b303a316632653364346335623661373938381274"
        "782d3030303030314462616e6b2e62616e7175652d616c70696e652e7472616e73616374696f6e732e76"
        "31068eda9601020206020c636e732d34320280a698c6c468f0e1cfc9c468",
    ),
    (
        "bank outcome",
        model.BANK_OUTCOME,
        14,
        samples.BANK_OUTCOME,
        "000000000e021274782d303030303031068eda960102020e5245564f4b4544f0e1cfc9c468",
    ),
    (
        "disclosure",
        model.DISCLOSURE,
        17,
        samples.DISCLOSURE,
        "00000000111a62616e7175652d616c70696e65266b303a316632653364346335623661373938380a6e74"
        "662d31165452414e53414354494f4e0c636e732d3432266b303a30613162326333643465356636303731"
        "061c6163636f756e745f6d61736b656418616d6f756e745f6d696e6f721063757272656e637900f0e1cf"
        "c9c468",
    ),
    (
        "erasure receipt",
        model.ERASURE_RECEIPT,
        5,
        samples.ERASURE_RECEIPT,
        "00000000051a62616e7175652d616c70696e65266b303a316632653364346335623661373938380c636e"
        "732d343280e0cfc9c46800e8e7cfc9c46802106163636f756e747302266b303a31663265336434633562"
        "36613739383800000216636f6e73656e74732e76313a6d61782e636f6d70616374696f6e2e6c61672e6d"
        "733d33363030303030e8dbbed0c46800",
    ),
]
GOLDEN_IDS = [g[0] for g in GOLDEN]


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


def _plain(value: Any) -> Any:
    """The reference decoder's logical values as the numbers our codec reads them as."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dt.time):
        return (
            (value.hour * 60 + value.minute) * 60 + value.second
        ) * 1000 + value.microsecond // 1000
    if isinstance(value, dt.date):
        return (value - dt.date(1970, 1, 1)).days
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _reference_decode(schema: SchemaVersion, body: bytes) -> Any:
    reader = avro.io.DatumReader(avro.schema.parse(json.dumps(schema.definition)))
    return reader.read(avro.io.BinaryDecoder(io.BytesIO(body)))


def _reference_encode(schema: SchemaVersion, record: Any) -> bytes:
    plain = avro.schema.parse(json.dumps(_without_logical_types(schema.definition)))
    out = io.BytesIO()
    avro.io.DatumWriter(plain).write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


class TestGoldenBytes:
    @pytest.mark.parametrize(
        ("name", "subject", "schema_id", "record", "frame"), GOLDEN, ids=GOLDEN_IDS
    )
    def test_encoding_gives_the_pinned_bytes(
        self, codec: Codec, name: str, subject: str, schema_id: int, record: Any, frame: str
    ) -> None:
        """Encoding a record with a pinned schema id gives exactly the pinned frame."""
        assert codec.encode(subject, record, schema_id=schema_id).hex() == frame

    @pytest.mark.parametrize(
        ("name", "subject", "schema_id", "record", "frame"), GOLDEN, ids=GOLDEN_IDS
    )
    def test_reference_decoder_reads_the_pinned_bytes(
        self,
        registry: EmbeddedRegistry,
        name: str,
        subject: str,
        schema_id: int,
        record: Any,
        frame: str,
    ) -> None:
        """The Avro reference implementation decodes our body to the same record."""
        body = bytes.fromhex(frame)[HEADER_SIZE:]
        decoded = _plain(_reference_decode(registry.by_id(schema_id), body))
        expected = dict(record)
        if schema_id == 6:
            expected["value_date"] = None
        assert decoded == expected

    @pytest.mark.parametrize(
        ("name", "subject", "schema_id", "record", "frame"), GOLDEN, ids=GOLDEN_IDS
    )
    def test_reference_encoder_writes_the_same_body(
        self,
        registry: EmbeddedRegistry,
        name: str,
        subject: str,
        schema_id: int,
        record: Any,
        frame: str,
    ) -> None:
        """The reference encoder writes the same body bytes as ours, so ours is not self-checked."""
        full = {"value_date": None, **record} if schema_id == 6 else record
        assert (
            _reference_encode(registry.by_id(schema_id), full) == bytes.fromhex(frame)[HEADER_SIZE:]
        )

    @pytest.mark.parametrize(
        ("name", "subject", "schema_id", "record", "frame"), GOLDEN, ids=GOLDEN_IDS
    )
    def test_decoding_the_pinned_bytes_gives_the_record(
        self, codec: Codec, name: str, subject: str, schema_id: int, record: Any, frame: str
    ) -> None:
        """Decoding a pinned frame gives the record back, read as the subject's newest version."""
        decoded = codec.decode(subject, bytes.fromhex(frame))
        newest = samples.as_newest(subject, record)
        assert {k: decoded[k] for k in newest} == newest


class TestRegistry:
    def test_every_schema_parses_with_its_pinned_id(self, registry: EmbeddedRegistry) -> None:
        """registry.json pins ids 1–11 to the seven subjects, Transaction, ErasureReceipt,
        Notification and Decision having two versions each."""
        assert {
            v.id: (v.subject, v.version) for s in registry.subjects() for v in registry.versions(s)
        } == {
            1: (model.TRANSACTION, 1),
            2: (model.CONSENT, 1),
            3: (model.NOTIFICATION, 1),
            4: (model.DECISION, 1),
            5: (model.ERASURE_RECEIPT, 1),
            6: (model.TRANSACTION, 2),
            7: (model.ERASURE_RECEIPT, 2),
            8: (model.NOTIFICATION, 2),
            9: (model.DECISION, 2),
            10: (model.INBOUND_MESSAGE, 1),
            11: (model.WITHDRAWAL_REQUEST, 1),
            12: (model.DELIVERY_REPORT, 1),
            13: (model.DECISION, 3),
            14: (model.BANK_OUTCOME, 1),
            15: (model.ERASURE_RECEIPT, 3),
            16: (model.CONSENT, 2),
            17: (model.DISCLOSURE, 1),
            18: (model.DECISION, 4),
            19: (model.ERASURE_RECEIPT, 4),
        }

    def test_latest_is_the_highest_version(self, registry: EmbeddedRegistry) -> None:
        """A subject's newest version is the one writers use by default."""
        assert registry.latest(model.TRANSACTION).id == 6

    def test_a_missing_schema_file_fails_at_load(self, tmp_path: Path) -> None:
        """A registry index naming a file that does not exist fails fast, naming the file."""
        (tmp_path / "registry.json").write_text(
            json.dumps(
                {
                    "subjects": {"passerelle.Transaction": {"compatibility": "BACKWARD"}},
                    "schemas": [
                        {
                            "id": 1,
                            "subject": "passerelle.Transaction",
                            "version": 1,
                            "file": "nope.avsc",
                        }
                    ],
                }
            )
        )
        with pytest.raises(SchemaError, match=r"nope\.avsc"):
            EmbeddedRegistry.load(tmp_path)

    def test_a_repeated_id_fails_at_load(self, tmp_path: Path) -> None:
        """Two versions may never share an id."""
        src = Path(__file__).resolve().parents[2] / "schemas"
        for name in ("Transaction.v1.avsc", "Transaction.v2.avsc"):
            (tmp_path / name).write_text((src / name).read_text())
        (tmp_path / "registry.json").write_text(
            json.dumps(
                {
                    "subjects": {"passerelle.Transaction": {"compatibility": "BACKWARD"}},
                    "schemas": [
                        {
                            "id": 1,
                            "subject": "passerelle.Transaction",
                            "version": 1,
                            "file": "Transaction.v1.avsc",
                        },
                        {
                            "id": 1,
                            "subject": "passerelle.Transaction",
                            "version": 2,
                            "file": "Transaction.v2.avsc",
                        },
                    ],
                }
            )
        )
        with pytest.raises(SchemaError, match="repeats id 1"):
            EmbeddedRegistry.load(tmp_path)


class TestCompatibility:
    def test_every_registered_version_is_compatible_with_those_before(
        self, registry: EmbeddedRegistry
    ) -> None:
        """Each subject's versions pass its mode (Transaction v2 backward, Notification full)."""
        assert check_registry(registry, registry.subjects()) == {s: [] for s in registry.subjects()}

    def test_the_incompatible_fixture_is_rejected(self, registry: EmbeddedRegistry) -> None:
        """A Transaction that changes amount_minor's type and adds a required field is refused."""
        bad = json.loads((FIXTURES / "Transaction.incompatible.avsc").read_text())
        found = problems(
            "BACKWARD", bad, [v.definition for v in registry.versions(model.TRANSACTION)]
        )
        assert len(found) == 2
        assert all("iban" in p or "amount_minor" in p for p in found)

    def test_full_mode_also_checks_that_old_readers_read_new_data(
        self, registry: EmbeddedRegistry
    ) -> None:
        """Dropping a Notification field old readers need passes BACKWARD but not FULL."""
        v1 = registry.latest(model.NOTIFICATION).definition
        v2 = json.loads(json.dumps(v1))
        v2["fields"] = [f for f in v2["fields"] if f["name"] != "page_id"]
        assert problems("BACKWARD", v2, [v1]) == []
        assert any(p.startswith("forward") for p in problems("FULL", v2, [v1]))


class TestEvolution:
    def test_a_v1_frame_reads_as_v2_with_the_new_field_defaulted(self, codec: Codec) -> None:
        """An old bank producer's frame is read with the newest schema, value_date null."""
        frame = codec.encode(model.TRANSACTION, samples.TRANSACTION, schema_id=1)
        decoded = codec.decode(model.TRANSACTION, frame)
        assert decoded["value_date"] is None
        assert decoded["amount_minor"] == samples.TRANSACTION["amount_minor"]

    def test_a_v2_frame_carries_the_new_field(self, codec: Codec) -> None:
        """A new producer's value_date survives the round trip."""
        frame = codec.encode(model.TRANSACTION, {**samples.TRANSACTION, "value_date": 20_786})
        assert codec.decode(model.TRANSACTION, frame)["value_date"] == 20_786

    def test_decode_any_names_the_subject_on_a_mixed_topic(self, codec: Codec) -> None:
        """The audit topic carries Decisions and ErasureReceipts; the frame says which."""
        for subject, record in [
            (model.DECISION, samples.DECISION),
            (model.ERASURE_RECEIPT, samples.ERASURE_RECEIPT),
        ]:
            read = codec.decode_any(codec.encode(subject, record))
            assert read == (subject, samples.as_newest(subject, record))


class TestCodecErrors:
    FRAME = bytes.fromhex(GOLDEN[0][4])

    @pytest.mark.parametrize(
        ("name", "frame", "error", "reason"),
        [
            ("empty", b"", TruncatedFrameError, "TRUNCATED_FRAME"),
            ("header cut", FRAME[:4], TruncatedFrameError, "TRUNCATED_FRAME"),
            ("magic byte", b"\x01" + FRAME[1:], BadMagicByteError, "BAD_MAGIC_BYTE"),
            (
                "unknown id",
                b"\x00\x00\x00\x03\xe7" + FRAME[5:],
                UnknownSchemaIdError,
                "UNKNOWN_SCHEMA_ID",
            ),
            (
                "other subject",
                b"\x00\x00\x00\x00\x02" + FRAME[5:],
                WrongSubjectError,
                "WRONG_SUBJECT",
            ),
            ("body cut", FRAME[:-3], BodyMismatchError, "BODY_MISMATCH"),
            ("bytes left over", FRAME + b"\x00\x00", BodyMismatchError, "BODY_MISMATCH"),
            ("bad utf-8", FRAME[:6] + b"\xff\xfe" + FRAME[8:], BodyMismatchError, "BODY_MISMATCH"),
        ],
    )
    def test_each_fault_raises_its_typed_error(
        self, codec: Codec, name: str, frame: bytes, error: type[CodecError], reason: str
    ) -> None:
        """Every way a frame can be wrong has its own error type and DLQ reason code."""
        with pytest.raises(error) as caught:
            codec.decode(model.TRANSACTION, frame)
        assert caught.value.reason == reason

    def test_errors_never_quote_the_payload(self, codec: Codec) -> None:
        """No decode error message or cause carries a byte or a value of the payload."""
        payload = self.FRAME[:6] + b"\xff\xfe" + self.FRAME[8:]
        with pytest.raises(BodyMismatchError) as caught:
            codec.decode(model.TRANSACTION, payload)
        message = str(caught.value)
        assert "xff" not in message and "tx-0" not in message
        assert caught.value.__cause__ is None

    def test_encode_error_names_the_field_not_the_value(self, codec: Codec) -> None:
        """A record that does not fit says which field, never what was in it."""
        bad = {**samples.TRANSACTION, "amount_minor": "12,34 EUR"}
        with pytest.raises(EncodeError, match="amount_minor") as caught:
            codec.encode(model.TRANSACTION, bad)
        assert "12,34" not in str(caught.value)

    def test_encoding_with_another_subjects_id_is_refused(self, codec: Codec) -> None:
        """A writer cannot frame a Transaction with the Consent schema id."""
        with pytest.raises(WrongSubjectError):
            codec.encode(model.TRANSACTION, samples.TRANSACTION, schema_id=2)
