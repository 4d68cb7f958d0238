"""The `passerelle` command: one line for every mistake a user can make, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


class TestWrongArguments:
    @pytest.mark.parametrize(
        "args",
        [
            ("nonsense",),
            ("topics",),
            ("topics", "explode"),
            ("kafka", "up", "--bogus"),
            ("kafka", "logs", "--lines", "many"),
            (),
        ],
    )
    def test_a_wrong_argument_gives_one_line_and_exit_2(self, args: tuple[str, ...]) -> None:
        """A usage mistake prints one line on stderr pointing to --help, and exits 2."""
        result = run(*args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert "--help" in result.stderr and "Traceback" not in result.stderr

    def test_a_bad_environment_variable_gives_one_line_and_exit_1(self) -> None:
        """A malformed setting is refused in one line naming the variable."""
        result = run("topics", "list", PASSERELLE_PARTITIONS="many")
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            "passerelle topics: PASSERELLE_PARTITIONS must be a whole number, got 'many'"
        ]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("worker", "standin"), "needs --prefix"),
            (("bench", "--records", "10"), "at least 1000"),
            (("bench", "--scale", "--quick"), "exclude each other"),
        ],
    )
    def test_a_refused_option_gives_one_line(self, args: tuple[str, ...], message: str) -> None:
        """An option that parses but cannot be honoured is refused in one line, exit 1."""
        result = run(*args)
        assert result.returncode == 1 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    @pytest.mark.parametrize(
        ("option", "value", "message"),
        [
            ("--timezone", "Europe/Londn", "timezone is not an IANA time zone"),
            ("--locale", "xx-YY", "locale is not a known BCP 47 locale"),
        ],
    )
    def test_consent_grant_refuses_what_the_worker_would_refuse(
        self, option: str, value: str, message: str
    ) -> None:
        """`consent grant` checks the consent as ingest will, before any Kafka call: one
        line, exit 1, instead of a consent that would withhold the account."""
        args = ["consent", "grant", "--bank", "b", "--account", "A1", "--psid", "p1"]
        result = run(*args, option, value, PASSERELLE_BOOTSTRAP="127.0.0.1:1")
        assert result.returncode == 1, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1

    @pytest.mark.parametrize(
        "args",
        [
            ("topics", "list", "--bank", "Evil.Bank"),
            ("consent", "grant", "--bank", "Bad_Bank", "--account", "A1", "--psid", "p1"),
            ("reconcile", "--bank", "NOT_VALID"),
            ("produce", "--bank", "a.b"),
        ],
    )
    def test_an_invalid_bank_id_is_a_usage_error(self, args: tuple[str, ...]) -> None:
        """A bank id that could forge a topic name is refused by the parser, before any
        Kafka call: one line naming the rule, exit 2."""
        result = run(*args, PASSERELLE_BOOTSTRAP="127.0.0.1:1")
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "lowercase letters, digits and dashes" in result.stderr

    @pytest.mark.parametrize(
        ("args", "line"),
        [
            (
                ("consent", "grant", "--bank", "b", "--account", "A", "--days", "-3"),
                "--days: must be at least 1, got -3",
            ),
            (("simulate", "--events", "0"), "--events: must be at least 1, got 0"),
            (("tail", "--bootstrap", "bad::host"), "--bootstrap: must be host:port[,host:port...]"),
            (("reconcile", "--bank", "a", "--bootstrap", "a:b"), "--bootstrap: must be host:port"),
        ],
    )
    def test_a_value_out_of_range_is_a_usage_error(self, args: tuple[str, ...], line: str) -> None:
        """A number or address an option cannot take is refused by the parser: exit 2."""
        result = run(*args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and line in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            ("tail",),
            ("consent", "show", "--bank", "a", "--account", "b"),
            ("reconcile", "--bank", "a"),
            ("simulate", "--events", "5", "--rate", "0"),
            ("deliver",),
        ],
    )
    def test_no_broker_is_one_sentence_not_a_traceback(self, args: tuple[str, ...]) -> None:
        """Without a broker a tool says, in its one line, where it looked and what to do,
        and exits 1 (the client's own connection errors are not shown)."""
        for where in ({"PASSERELLE_BOOTSTRAP": "127.0.0.1:1"}, {"PASSERELLE_KAFKA_PORT": "1"}):
            result = run(*args, **where)
            assert result.returncode == 1
            assert result.stderr.strip().splitlines() == [
                f"passerelle {args[0]}: cannot reach Kafka at 127.0.0.1:1: start it "
                "(make kafka-up), or point --bootstrap or PASSERELLE_BOOTSTRAP at it"
            ]

    @pytest.mark.parametrize(
        ("args", "env", "line"),
        [
            (("deliver", "--group", "deliver-1"), {}, "--group must start with messenger-"),
            (("deliver",), {"PASSERELLE_GRAPH_URL": "ftp://x"}, "GRAPH_URL must start with http"),
            (("deliver", "--start", "middle"), {}, "invalid choice: 'middle'"),
        ],
    )
    def test_a_wrong_delivery_setting_is_one_line(
        self, args: tuple[str, ...], env: dict[str, str], line: str
    ) -> None:
        """The delivery worker refuses a group its ACLs would refuse, a Graph URL that is
        not HTTP(S) and an unknown start, in one line, before any Kafka call."""
        result = run(*args, PASSERELLE_BOOTSTRAP="127.0.0.1:1", **env)
        assert result.returncode in (1, 2), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and line in result.stderr

    def test_the_bootstrap_option_wins_over_the_environment(self) -> None:
        """--bootstrap names the brokers whatever PASSERELLE_BOOTSTRAP says."""
        result = run("tail", "--bootstrap", "127.0.0.1:2", PASSERELLE_BOOTSTRAP="127.0.0.1:1")
        assert "cannot reach Kafka at 127.0.0.1:2" in result.stderr

    @pytest.mark.parametrize(
        ("line", "said"),
        [
            ({"amount_minor": 12.5}, "field amount_minor: must be a whole number of minor units"),
            ({"booked_at": "2026-11-28T12:00:00"}, "field booked_at: needs a zone offset"),
            ({"status": "DONE"}, "field status: must be one of PENDING, BOOKED, REVERSED"),
            ({"channel": None}, "field channel: must be one of CARD, TRANSFER"),
            ({"mcc": 5411}, "field mcc: expected null or string, got int"),
            ({"booked_at": None}, "field booked_at: "),
        ],
    )
    def test_produce_names_the_field_and_what_it_expects(
        self, line: dict[str, object], said: str
    ) -> None:
        """A line that does not fit the schema is refused before any Kafka call, with the
        field, what it expects and what it got (never the value): exit 1."""
        import json

        good = {
            "bank_id": "alpha",
            "account_id": "A1",
            "transaction_id": "t1",
            "status": "BOOKED",
            "amount_minor": -1250,
            "currency": "EUR",
            "booked_at": "2026-11-28T12:00:00+01:00",
            "channel": "CARD",
        }
        result = subprocess.run(
            [sys.executable, "-m", "streams", "produce", "--bank", "alpha"],
            input=json.dumps({**good, **line}) + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PASSERELLE_BOOTSTRAP": "127.0.0.1:1"},
        )
        assert result.returncode == 1 and said in result.stdout, result.stdout
        assert "refused" in result.stderr and "Traceback" not in result.stderr

    def test_every_option_says_what_it_is_for(self) -> None:
        """`--help` of every command explains each of its arguments."""
        import argparse

        from streams.cli import build_parser

        parser = build_parser()
        silent = []
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, command in commands.choices.items():
            for action in command._actions:
                if not action.help and not isinstance(action, argparse._HelpAction):
                    silent.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
        assert silent == []

    def test_the_help_lists_every_setting_and_the_readme_explains_each(self) -> None:
        """`passerelle --help` ends with every PASSERELLE_* variable the settings read, and
        the README's settings table says what each one does."""
        from pathlib import Path

        from streams.settings import variables

        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        result = run("--help")
        # the settings of a worker and of the local broker are among them (not vacuous)
        assert {"PASSERELLE_BOOTSTRAP", "PASSERELLE_MAX_BATCH", "PASSERELLE_KAFKA_HEAP"} <= set(
            variables()
        )
        assert all(name in result.stdout for name in variables())
        assert [name for name in variables() if f"`{name}`" not in readme] == []


class TestCommands:
    def test_help_lists_the_commands(self) -> None:
        """`passerelle --help` names each command."""
        result = run("--help")
        assert result.returncode == 0
        assert all(word in result.stdout for word in ("kafka", "topics", "schemas"))

    def test_schemas_check_passes_on_the_shipped_schemas(self) -> None:
        """The shipped versions are compatible under their subjects' modes."""
        result = run("schemas", "check")
        assert result.returncode == 0, result.stderr
        assert "compatible: every version of 10 subjects" in result.stdout

    def test_topics_list_shows_the_catalog(self) -> None:
        """The catalog can be read without a broker."""
        result = run("topics", "list", "--bank", "demo")
        assert result.returncode == 0
        assert "bank.demo.transactions.v1" in result.stdout and "consents.v1" in result.stdout


def test_kafkas_options_follow_any_action_and_a_tools_arguments_are_its_own() -> None:
    """`kafka status --cluster` and `kafka up --secure` (the Makefile's) parse; after
    `kafka tool`, every argument goes to the Kafka tool unparsed, ours included."""
    from streams.cli import _parse

    assert _parse(["kafka", "status", "--cluster"]).cluster
    assert _parse(["kafka", "up", "--secure"]).secure
    assert _parse(["kafka", "logs", "--lines", "3"]).lines == 3
    tool = _parse(["kafka", "--bootstrap", "127.0.0.1:9", "tool", "acls", "--list", "--lines"])
    assert tool.tool_args == ["acls", "--list", "--lines"] and tool.bootstrap == "127.0.0.1:9"
