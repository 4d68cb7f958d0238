"""The scaling bench's report (`streams/devkit/bench/scale.py`): per-transaction costs
from the rows it measured, and each worker count against one worker."""

from __future__ import annotations

from streams.devkit.bench.feed import population
from streams.devkit.bench.scale import Failover, Scale, table


def row(workers: int, replicas: int, cpu_s: float, standby: int, transactions: int = 0) -> Scale:
    return Scale(workers, replicas, 400.0, 12_000, 30.0, cpu_s, standby, 80.0,
                 (150.0,) * workers, (2.0,) * workers, 0.1, 8.0, transactions)  # fmt: skip


class TestScaleReport:
    def test_costs_are_per_transaction(self) -> None:
        """CPU seconds per 100 000 decided, standby records and Kafka transactions per
        1 000 decided."""
        r = row(2, 1, cpu_s=6.0, standby=9_000, transactions=1_800)
        assert r.cpu_s_per_100k == 50.0 and r.standby_per_1k == 750.0
        assert r.transactions_per_1k == 150.0

    def test_each_row_is_compared_with_one_worker_at_the_same_k(self) -> None:
        """The table's ratio columns divide by the one-worker row of the same k."""
        rows = [row(1, 1, 6.0, 0), row(4, 1, 7.5, 9_000), row(1, 0, 3.0, 0), row(4, 0, 3.0, 0)]
        lines = table(rows, Failover(12.5, 40, 9_000)).splitlines()
        assert "(1.25×)" in lines[2] and "(1.00×)" in lines[4]
        assert lines[-1].endswith("40 changelog records restored (of 9,000 in the changelog)")


class TestFeed:
    def test_the_notifications_expected_count_the_consenting_accounts_taken_in_turn(self) -> None:
        """`offer` takes the accounts in turn from `first`, wrapping around: a span
        notifies once per transaction to an account with a consent."""
        pop = population("bank-x", 50, seed=3)
        consenting = [a.consent is not None for a in pop.accounts]
        assert pop.notified(0, 50) == sum(consenting)
        assert pop.notified(45, 10) == sum(consenting[45:]) + sum(consenting[:5])
        assert pop.notified(7, 150) == 3 * sum(consenting)
