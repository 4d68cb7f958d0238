"""What the commands that play the other parties do (`streams/cli.py`): a bank
(`produce`, `simulate`), the consent authority (`consent`), a customer in the chat
(`ask`) and the messaging team (`deliver`, `tail`). They stand in for systems we do
not run, for tests and demos; `streams/commands.py` holds the operator's commands,
and the same conventions (a refusal is a PasserelleError; imports inside)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.commands import codec_of
from streams.errors import PasserelleError


def run_tail(args: argparse.Namespace) -> None:
    from streams.settings import Settings
    from streams.tools import tail

    settings = Settings.from_env()
    asyncio.run(
        tail.tail(
            settings, codec_of(settings), from_beginning=args.from_beginning, json_lines=args.json
        )
    )


def run_deliver(args: argparse.Namespace) -> None:
    from streams.tools import deliverserve

    asyncio.run(deliverserve.serve(args.topic, args.group, args.start))


def run_ask(args: argparse.Namespace) -> None:
    from streams.settings import Settings
    from streams.tools import ask

    settings = Settings.from_env()
    said = ask.message(args.psid, args.page, args.text, args.payload)
    asyncio.run(ask.ask(settings, codec_of(settings), said, args.wait))


def run_produce(args: argparse.Namespace) -> None:
    from streams.catalog import bank_topic_name
    from streams.settings import Settings
    from streams.tools import produce

    try:
        bank_topic_name(args.bank)
    except ValueError as exc:
        raise PasserelleError(str(exc)) from None
    settings = Settings.from_env()
    codec = codec_of(settings)
    try:
        source = open(args.file, encoding="utf-8") if args.file != "-" else sys.stdin  # noqa: SIM115  # closed below
    except OSError as exc:
        raise PasserelleError(f"cannot read {args.file}: {exc.strerror}") from None
    with source:
        report = asyncio.run(produce.produce(settings, codec, args.bank, source))
    if report.errors:
        raise PasserelleError(f"{len(report.errors)} line(s) refused; see above")


def run_consent(args: argparse.Namespace) -> None:
    from streams.rules.masking import mask_account
    from streams.settings import Settings
    from streams.tools import consent

    settings = Settings.from_env()
    codec = codec_of(settings)
    if args.action == "grant":
        if not args.psid:
            raise PasserelleError("grant needs --psid")
        perms = [p.strip().upper() for p in args.permissions.split(",") if p.strip()]
        record = consent.grant(
            args.bank,
            args.account,
            args.psid,
            args.page,
            perms,
            args.locale,
            args.timezone,
            args.days,
            args.digest,
            args.large,
            args.low,
            "DISCREET" if args.discreet else "FULL",
        )
        asyncio.run(consent.write(settings, codec, record))
        print(f"granted {record['consent_id']}: {consent.shown(record)}")
        return
    if args.action == "erase":
        asyncio.run(consent.erase(settings, args.bank, args.account))
        print(f"erased {args.bank}:{mask_account(args.account)}: its tombstone is on consents.v1")
        return
    held = asyncio.run(consent.current(settings, codec, args.bank, args.account))
    if args.action == "show":
        print(consent.shown(held))
        return
    if held is None:
        raise PasserelleError("no consent to revoke for that account")
    record = consent.revoked(held)
    asyncio.run(consent.write(settings, codec, record))
    print(f"revoked {record['consent_id']} (version {record['updated_at']})")


def run_simulate(args: argparse.Namespace) -> None:
    from streams.logs import quiet_client_loggers
    from streams.settings import Settings
    from streams.tools import simulate

    if args.events < 1 or args.rate < 0:
        raise PasserelleError("--events must be at least 1 and --rate at least 0")
    settings = Settings.from_env()
    quiet_client_loggers()
    codec = codec_of(settings)
    feed = asyncio.run(simulate.run(settings, codec, args.events, args.rate, seed=args.seed))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(feed.kinds.items()))
    print(f"sent {sum(feed.sent.values())} bank events ({kinds})")
