"""The per-account stream's contract: which kinds of record travel on it.

Ingest writes every record of an account to one partition of
`<app_id>.accounts`, keyed `<bank_id>:<account_id>`, with a `kind` header; the
accounts stage dispatches on it. Tick records (`streams.core.ticks`) travel on
the same topic under their own key.
"""

from __future__ import annotations

KIND_TRANSACTION = b"transaction"
"""The bank's Avro frame, unchanged."""
KIND_CONSENT = b"consent"
"""The consent authority's Avro frame, unchanged; no value: a tombstone (erase)."""
KIND_UNREADABLE_CONSENT = b"consent-unreadable"
"""No value: a consent record for this account was dead-lettered. The account
withholds every output until a newer readable consent arrives (fail closed)."""
