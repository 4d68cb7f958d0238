"""Record sizes that several layers must agree on: the topics' limits, the producers'
request size, and the engine's changelog batches. Plain numbers, no imports: the
catalog sets topic configs from them, the client factory and the engine read them."""

from __future__ import annotations

# The largest record a bank or the consent authority may write (the broker
# refuses more), and the DLQ's, which must hold any of them plus our headers.
MAX_INPUT_BYTES = 1024 * 1024
MAX_DLQ_BYTES = 2 * MAX_INPUT_BYTES
# A stage writes one batch's changelog records to a partition as one record batch,
# so they are written whole or not at all; a batch whose changes exceed this is
# processed in halves.
MAX_CHANGELOG_BATCH_BYTES = 8 * 1024 * 1024
# A stage deletes what it committed of one of our own streams at most this often
# (`core.purge`): the engine does it, the catalog states the bound.
PURGE_EVERY_S = 30
