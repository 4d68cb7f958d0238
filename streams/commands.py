"""What each operator's `passerelle` command does, once its arguments are parsed
(`streams/cli.py`); the commands that play the other parties (a bank, the consent
authority, a customer, the messaging team) are in `streams/parties.py`.

Each `run_<command>` takes the parsed arguments; what it refuses it raises as a
PasserelleError, which the CLI prints as one line. Imports are inside the
functions: a command loads only what it uses, so `passerelle --help` is quick.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from streams.errors import PasserelleError


def run_kafka(args: argparse.Namespace) -> int | None:
    from streams.devkit import localkafka
    from streams.settings import LocalKafkaSettings, Settings
    from streams.tools import kafkacli, kafkajars

    if args.action == "tool":
        if not args.tool_args or args.tool_args[0] not in kafkacli.TOOLS:
            args.parser.error(f"kafka tool needs one of: {', '.join(kafkacli.TOOLS)}")
        name, *rest = args.tool_args
        return kafkacli.run_tool(Settings.from_env(), name, rest)
    if args.tool_args:
        args.parser.error(f"unrecognized arguments: {' '.join(args.tool_args)}")
    settings = LocalKafkaSettings.from_env()
    if args.action == "fetch":
        print(f"Kafka {kafkajars.kafka_version()} jars: {kafkajars.ensure_jars(settings)}")
        return None
    if args.cluster:
        cluster = localkafka.Cluster.three(settings)
    elif args.secure:
        cluster = localkafka.Cluster.secured(settings)
    else:
        cluster = localkafka.Cluster.single(settings)
    if args.action == "up":
        localkafka.up(cluster, settings)
        if cluster.secure:
            print(
                f"users {', '.join(cluster.users)}; passwords in "
                f"{cluster.password_file('<user>')} (PASSERELLE_SASL_PASSWORD_FILE)"
            )
    elif args.action == "down":
        localkafka.down(cluster)
    elif args.action == "status":
        for node, pid in localkafka.status(cluster):
            state = f"running, pid {pid}" if pid else "stopped"
            print(f"node {node.node_id} 127.0.0.1:{node.port}: {state}")
    elif args.action == "logs":
        print(localkafka.log_tail(cluster, args.lines))
    elif args.action == "bootstrap":
        print(cluster.bootstrap)
    return None


def run_dlq(args: argparse.Namespace) -> None:
    from streams.crypto import keyring_of
    from streams.settings import Settings
    from streams.tools import dlq

    settings = Settings.from_env()
    if args.decrypt and args.action != "show":
        raise PasserelleError("--decrypt goes with `dlq show`")
    ring = keyring_of(settings) if args.decrypt else None  # refused before any reading
    letters = asyncio.run(dlq.read(settings, args.bank))
    if ring is not None:
        keys = asyncio.run(dlq.data_keys(settings))
        dlq.show_opened(letters, keys, ring, codec_of(settings))
    else:
        (dlq.show if args.action == "show" else dlq.count)(letters)


def run_topics(args: argparse.Namespace) -> None:
    from streams.catalog import Catalog
    from streams.settings import Settings
    from streams.tools import topics

    settings = Settings.from_env()
    try:
        wanted = Catalog(settings).all(args.bank)
    except ValueError as exc:
        raise PasserelleError(str(exc)) from None
    if args.action == "create":
        asyncio.run(topics.create(settings, wanted))
    else:
        for topic in wanted:
            config = " ".join(f"{k}={v}" for k, v in sorted(topic.config.items()))
            print(
                f"{topic.name}  partitions={topic.partitions} "
                f"rf={topic.replication_factor} key={topic.key}  {config}"
            )


def run_acls(args: argparse.Namespace) -> None:
    from streams import security
    from streams.settings import Settings
    from streams.tools import acls

    settings = Settings.from_env()
    try:
        for bank in args.bank:
            security.bank_principal(bank)
    except ValueError as exc:
        raise PasserelleError(str(exc)) from None
    if args.action == "apply":
        acls.apply(settings, args.bank, quota=args.quota, prune=args.prune)
    else:
        acls.show(settings, args.bank, check=args.check)


def run_schemas(args: argparse.Namespace) -> None:
    from streams.codec import EmbeddedRegistry
    from streams.compat import check_registry
    from streams.settings import Settings

    registry = EmbeddedRegistry.load(Settings.from_env().schemas_dir)
    if args.action == "serve":
        from aiohttp import web

        from streams.schema_api import SchemaApi, routes

        (app := web.Application()).add_routes(routes(SchemaApi(registry)))
        print(
            f"serving {len(registry.subjects())} subjects read-only, Confluent REST paths, "
            f"at http://{args.host}:{args.port}",
            flush=True,
        )
        web.run_app(app, host=args.host, port=args.port, print=None)
        return
    if args.action == "list":
        for subject in registry.subjects():
            for version in registry.versions(subject):
                print(
                    f"id {version.id:3}  {subject} v{version.version}  "
                    f"({registry.compatibility(subject)})"
                )
        return
    report = check_registry(registry, registry.subjects())
    faults = [f"{subject} {problem}" for subject, found in report.items() for problem in found]
    if faults:
        raise PasserelleError("incompatible schema versions: " + "; ".join(faults))
    print(f"compatible: every version of {len(report)} subjects")


def run_worker(args: argparse.Namespace) -> None:
    from streams import app, worker
    from streams.settings import Settings

    settings = Settings.from_env()
    # What the worker writes (RocksDB stores, faust's folder) is readable by us only:
    # the stores hold customers' account summaries and consents.
    os.umask(0o077)
    if args.workload == "standin":
        if not args.prefix:
            raise PasserelleError("the standin workload needs --prefix")
        built = worker.standin_app(settings, args.prefix, args.tick_interval or 0.0)
    else:
        interval = 1.0 if args.tick_interval is None else args.tick_interval
        built = worker.pipeline_app(settings, interval)
    app.main(built, settings, args.log_level.lower())


def run_bench(args: argparse.Namespace) -> None:
    from streams.devkit import bench
    from streams.logs import quiet_client_loggers
    from streams.settings import Settings

    if args.records < 1000:
        raise PasserelleError("--records must be at least 1000 for a meaningful rate")
    if sum((args.full, args.quick, args.scale)) > 1:
        raise PasserelleError("--full, --quick and --scale exclude each other")
    quiet_client_loggers()
    if args.scale:
        from streams.devkit.bench.scale import run_scale

        asyncio.run(run_scale(Settings.from_env()))
        return
    sizes: tuple[int, ...] = (10_000, 100_000)
    if args.full:
        sizes += (1_000_000,)
    rounds, sent = 3, 4_000
    if args.quick:
        sizes, rounds, sent = (2_000,), 1, 500
    settings = Settings.from_env()
    asyncio.run(bench.run(settings, args.records, sizes=sizes, rounds=rounds, deliveries=sent))


def run_demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    from streams.logs import quiet_client_loggers
    from streams.settings import Settings
    from streams.tools import demo

    settings = Settings.from_env()
    settings.require_hash_key()  # the demo's worker would refuse it: say so at once
    quiet_client_loggers()
    codec = codec_of(settings)
    log = Path(".run") / "demo-worker.log"
    if not asyncio.run(demo.run(settings, codec, args.seconds, args.rate, log)):
        raise PasserelleError("reconciliation did not balance; see the lines above")


def run_reconcile(args: argparse.Namespace) -> None:
    from streams.settings import Settings
    from streams.tools import reconcile

    settings = Settings.from_env()
    codec = codec_of(settings)
    lines, balanced = asyncio.run(
        reconcile.report(settings, codec, args.bank, args.wait, args.feed)
    )
    print("\n".join(lines))
    if not balanced:
        raise PasserelleError("not balanced")


def run_privacy(args: argparse.Namespace) -> None:
    from streams import privacy
    from streams.catalog import Catalog
    from streams.codec import Codec, EmbeddedRegistry
    from streams.settings import Settings

    settings = Settings.from_env()
    registry = EmbeddedRegistry.load(settings.schemas_dir)
    if args.action == "record":
        print("\n".join(privacy.lines(privacy.record(Catalog(settings), registry))))
        return
    from streams.tools import disclosures

    if not args.bank or not args.account:
        raise PasserelleError("disclosures needs --bank and --account")
    report = disclosures.report(settings, Codec(registry), args.bank, args.account)
    print("\n".join(asyncio.run(report)))


def codec_of(settings: Any) -> Any:
    """The codec of the settings' schemas (`streams.codec.Codec`)."""
    from streams.codec import Codec, EmbeddedRegistry

    return Codec(EmbeddedRegistry.load(settings.schemas_dir))
