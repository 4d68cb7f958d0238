"""The `passerelle` command.

Every error a user can cause ends in one line on stderr and a non-zero exit:
2 for a wrong argument, 1 for anything else Passerelle refuses or cannot do.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from streams import __version__, parties
from streams import commands as actions
from streams.errors import PasserelleError
from streams.security import DEFAULT_BANK_QUOTA

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _bank_id(text: str) -> str:
    """An argparse type: a bank id as topic names need it (a usage error otherwise)."""
    from streams.catalog import bank_topic_name

    try:
        bank_topic_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _bootstrap(text: str) -> str:
    """An argparse type: host:port[,host:port…]."""
    from streams.settings import bootstrap_fault

    wrong = bootstrap_fault(text)
    if wrong:
        raise argparse.ArgumentTypeError(wrong)
    return text


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _epilog() -> str:
    from streams.settings import variables

    names = textwrap.fill(
        ", ".join(variables()),
        width=78,
        initial_indent="  ",
        subsequent_indent="  ",
        break_on_hyphens=False,
    )
    return (
        "settings (environment variables; README, 'Settings', says what each does):\n"
        + names
        + "\n\nexit codes: 0 done, 1 refused or failed (one line says why), 2 a wrong argument"
    )


def _banks(parser: argparse.ArgumentParser, what: str, required: bool = False) -> None:
    """A repeatable --bank BANK_ID option (each checked as a topic name needs it)."""
    parser.add_argument(
        "--bank",
        action="append",
        default=None if required else [],
        required=required,
        type=_bank_id,
        metavar="BANK_ID",
        help=f"{what} (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="passerelle",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"passerelle {__version__}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--bootstrap",
        type=_bootstrap,
        metavar="HOST:PORT",
        help="Kafka's bootstrap servers (default: PASSERELLE_BOOTSTRAP, else the local "
        "broker at 127.0.0.1:PASSERELLE_KAFKA_PORT)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A command's parser: every command takes the common options (--bootstrap)."""
        parser: argparse.ArgumentParser = subparsers.add_parser(name, parents=[common], **kwargs)
        return parser

    kafka = command("kafka", help="the project's own local Apache Kafka (no Docker)")
    kafka.add_argument(
        "action",
        choices=["fetch", "up", "down", "status", "logs", "bootstrap", "tool"],
        help="fetch the jars; start, stop or show the broker; its logs; its bootstrap "
        "address; or run one of Kafka's own tools against the brokers (tool NAME ARGS...)",
    )
    which = kafka.add_mutually_exclusive_group()
    which.add_argument(
        "--cluster",
        action="store_true",
        help="the three-node cluster (RF 3, min.insync.replicas=2)",
    )
    which.add_argument(
        "--secure",
        action="store_true",
        help="the secure node: SCRAM-SHA-512, ACLs enforced (127.0.0.1:9292)",
    )
    kafka.add_argument("--lines", type=int, default=40, help="log lines per node (logs)")
    kafka.add_argument(  # only shown: `main` hands what follows `tool` to it, unparsed
        "tool_args",
        nargs="*",
        metavar="NAME ARGS",
        help="tool: console-consumer, console-producer, consumer-groups, transactions, "
        "configs, topics, get-offsets, delete-records or acls, and its own arguments; it "
        "connects as the PASSERELLE_* settings say (no password on the command line)",
    )
    kafka.set_defaults(run=actions.run_kafka, parser=kafka)

    topics = command("topics", help="provision or list the catalog's topics")
    topics.add_argument(
        "action", choices=["create", "list"], help="create what is missing, or list the catalog"
    )
    _banks(topics, "also the ingest topic of this bank")
    topics.set_defaults(run=actions.run_topics)

    acl = command(
        "acls", help="provision the design's ACLs and bank quotas (as an admin principal)"
    )
    acl.add_argument(
        "action", choices=["apply", "show"], help="grant the design's ACLs, or list them"
    )
    _banks(acl, "a bank to grant")
    acl.add_argument(
        "--quota",
        type=int,
        default=DEFAULT_BANK_QUOTA,
        metavar="BYTES_PER_S",
        help="each bank's produce quota (default 1 MiB/s)",
    )
    acl.add_argument(
        "--prune",
        action="store_true",
        help="apply: remove every ACL beyond the design on what it manages (any principal)",
    )
    acl.add_argument("--check", action="store_true", help="show: exit 1 on any drift")
    acl.set_defaults(run=actions.run_acls)

    work = command("worker", help="run a stage until SIGTERM")
    work.add_argument(
        "workload",
        choices=["pipeline", "standin"],
        help="pipeline: the consent pipeline; standin: the core's proof workload",
    )
    work.add_argument("--prefix", help="topic prefix of the stand-in workload")
    work.add_argument(
        "--tick-interval",
        type=float,
        metavar="SECONDS",
        help="write the time to every input partition this often; 0: no ticker (a test "
        "clock drives time); default: 1 for pipeline, none for standin",
    )
    work.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING"],
        help="the worker's log level (default INFO)",
    )
    work.set_defaults(run=actions.run_worker)

    bench = command(
        "bench", help="the pipeline against a bare aiokafka passthrough: throughput, latency, state"
    )
    bench.add_argument(
        "--records", type=int, default=50_000, help="transactions for throughput (default 50000)"
    )
    bench.add_argument(
        "--full", action="store_true", help="also the state at 1 000 000 accounts (long)"
    )
    bench.add_argument(
        "--quick", action="store_true", help="small sizes only: a check that the bench runs"
    )
    bench.add_argument(
        "--scale",
        action="store_true",
        help="instead: 1, 2 and 4 workers on three brokers, k = 0 and 1 (docs/performance.md)",
    )
    bench.set_defaults(run=actions.run_bench)

    prod = command("produce", help="send JSON-lines transactions as a bank would")
    prod.add_argument(
        "--bank", required=True, type=_bank_id, metavar="BANK_ID", help="your bank id (the topic's)"
    )
    prod.add_argument("file", nargs="?", default="-", help="JSON lines (default: stdin)")
    prod.set_defaults(run=parties.run_produce)

    cns = command("consent", help="grant, revoke, erase or show an account's consent")
    cns.add_argument(
        "action",
        choices=["grant", "revoke", "erase", "show"],
        help="write a consent, end it, write its tombstone (erase), or show it",
    )
    cns.add_argument(
        "--bank", required=True, type=_bank_id, metavar="BANK_ID", help="the account's bank"
    )
    cns.add_argument("--account", required=True, metavar="ACCOUNT_ID", help="the account")
    cns.add_argument("--psid", help="the customer's page-scoped id (grant)")
    cns.add_argument("--page", default="page-demo", help="the bank's Messenger page (grant)")
    cns.add_argument(
        "--permissions",
        default="TRANSACTIONS,BALANCES,ALERTS,SUMMARIES",
        help="comma-separated (grant; default all four)",
    )
    cns.add_argument("--locale", default="fr-FR", help="BCP 47, fr-FR or en-GB (grant)")
    cns.add_argument("--timezone", default="Europe/Paris", help="IANA time zone (grant)")
    cns.add_argument(
        "--days", type=_positive, default=90, help="valid for this many days (grant; default 90)"
    )
    cns.add_argument("--digest", action="store_true", help="a daily digest")
    cns.add_argument(
        "--discreet",
        action="store_true",
        help="notifications say the kind, the masked account and the day only (grant)",
    )
    cns.add_argument("--large", type=int, help="large-transaction threshold, minor units")
    cns.add_argument("--low", type=int, help="low-balance threshold, minor units")
    cns.set_defaults(run=parties.run_consent)

    sim = command("simulate", help="a realistic feed of several banks")
    sim.add_argument(
        "--events", type=_positive, default=6000, help="bank events to send (default 6000)"
    )
    sim.add_argument("--rate", type=float, default=100.0, help="events per second (0: at once)")
    sim.add_argument("--seed", type=int, help="repeat a run (default: a new seed)")
    sim.set_defaults(run=parties.run_simulate)

    demo = command("demo", help="the pipeline on a simulated feed (make run)")
    demo.add_argument("--seconds", type=float, default=60.0, help="how long to simulate")
    demo.add_argument("--rate", type=float, default=100.0, help="bank events per second")
    demo.set_defaults(run=actions.run_demo)

    rec = command("reconcile", help="in = forwarded + withheld + dlq, per bank")
    _banks(rec, "a bank to reconcile", required=True)
    rec.add_argument("--wait", type=float, default=0.0, help="seconds to wait for balance")
    rec.add_argument(
        "--feed",
        action="store_true",
        help="count from the bank's own outcome feed (a bank's credentials suffice)",
    )
    rec.set_defaults(run=actions.run_reconcile)

    priv = command("privacy", help="the record of processing (GDPR Art. 30), from the code")
    priv.add_argument(
        "action",
        choices=["record", "disclosures"],
        help="record: the record of processing (Markdown); disclosures: every notification "
        "sent about one account, from the audit trail (an access request)",
    )
    priv.add_argument("--bank", type=_bank_id, metavar="BANK_ID", help="the account's bank")
    priv.add_argument("--account", metavar="ACCOUNT_ID", help="the account (disclosures)")
    priv.set_defaults(run=actions.run_privacy)

    dead = command("dlq", help="the dead-letter topic: each record's reason and source, or counts")
    dead.add_argument(
        "action",
        choices=["show", "count"],
        help="show: one line per dead letter (never its bytes); count: by bank and reason",
    )
    _banks(dead, "only this bank's; `consents` for consents.v1's")
    dead.add_argument(
        "--decrypt",
        action="store_true",
        help="break-glass: open each sealed letter (needs PASSERELLE_KEK_FILE and to read "
        "the accounts changelog); an erased account's letters say `shredded`",
    )
    dead.set_defaults(run=actions.run_dlq)

    talk = command("ask", help="say something to the Page as a customer, print the answers")
    talk.add_argument("text", nargs="?", help='what the customer writes, e.g. "solde ?"')
    talk.add_argument("--psid", required=True, help="the customer's page-scoped id")
    talk.add_argument("--page", default="page-1", help="the Page written to (default page-1)")
    talk.add_argument("--payload", help="a quick reply's payload instead, e.g. PASSERELLE_BALANCE")
    talk.add_argument(
        "--wait", type=_positive, default=15, help="seconds to wait for an answer (default 15)"
    )
    talk.set_defaults(run=parties.run_ask)

    dl = command(
        "deliver",
        help="the reference delivery worker: notifications to the Messenger Send API",
    )
    dl.add_argument("--group", default="messenger-deliver", help="consumer group (messenger-…)")
    dl.add_argument(
        "--topic", default="messenger.notifications.v1", help="the notifications topic to read"
    )
    dl.add_argument(
        "--start",
        choices=["earliest", "latest"],
        default="earliest",
        help="where a new group starts (default earliest: nothing is skipped; what has "
        "expired is reported EXPIRED, not sent)",
    )
    dl.set_defaults(run=parties.run_deliver)

    tl = command("tail", help="notifications as a messaging worker reads them")
    tl.add_argument(
        "--from-beginning", action="store_true", help="every notification kept, not only new ones"
    )
    tl.add_argument("--json", action="store_true", help="one JSON object per line")
    tl.set_defaults(run=parties.run_tail)

    schemas = command(
        "schemas",
        help="the embedded schema registry: list, check, or serve it to standard serializers",
    )
    schemas.add_argument(
        "action",
        choices=["list", "check", "serve"],
        help="list the ids, check compatibility, or serve the Confluent REST paths",
    )
    schemas.add_argument(
        "--port", type=int, default=8081, help="serve: the port (default 8081, the registry's)"
    )
    schemas.add_argument(
        "--host", default="127.0.0.1", help="serve: the address to listen on (default 127.0.0.1)"
    )
    schemas.set_defaults(run=actions.run_schemas)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    run: Callable[[argparse.Namespace], int | None] = args.run
    if args.bootstrap:
        os.environ["PASSERELLE_BOOTSTRAP"] = args.bootstrap
    if args.command != "worker":  # the client's own error logs would repeat our one line
        import logging

        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        code = run(args)
    except PasserelleError as exc:
        return _refused(args.command, str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        from aiokafka.errors import KafkaError

        if not isinstance(exc, KafkaError):
            raise
        return _refused(args.command, _kafka_refusal(exc))
    return code or 0


def _parse(argv: list[str]) -> argparse.Namespace:
    """The arguments; after `kafka tool`, everything is the Kafka tool's own (its options
    are not ours, and ours may follow any other action: `kafka status --cluster`)."""
    parser = build_parser()
    if argv[:1] == ["kafka"] and "tool" in argv:
        cut = argv.index("tool") + 1
        args = parser.parse_args(argv[:cut])
        args.tool_args = argv[cut:]
        return args
    return parser.parse_args(argv)


def _refused(command: str, why: str) -> int:
    print(f"passerelle {command}: {why}", file=sys.stderr)
    return EXIT_FAILURE


def _kafka_refusal(exc: Exception) -> str:
    """One sentence for an error of the Kafka client, with what to do about it."""
    from aiokafka import errors

    from streams.settings import Settings

    try:
        where = Settings.from_env().bootstrap_servers
    except PasserelleError:
        where = "the configured brokers"
    if isinstance(exc, errors.KafkaConnectionError | errors.KafkaTimeoutError):
        return (
            f"cannot reach Kafka at {where}: start it (make kafka-up), or point "
            "--bootstrap or PASSERELLE_BOOTSTRAP at it"
        )
    if isinstance(exc, errors.TopicAuthorizationFailedError | errors.GroupAuthorizationFailedError):
        return (
            f"Kafka refused this principal ({type(exc).__name__}): check "
            "PASSERELLE_SASL_USERNAME and what `passerelle acls show` grants it"
        )
    if isinstance(exc, errors.UnknownTopicOrPartitionError):
        return "a topic is missing: run `passerelle topics create [--bank BANK_ID]`"
    return f"Kafka refused the request: {type(exc).__name__}: {exc}"


if __name__ == "__main__":
    raise SystemExit(main())
