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
            ("--days", "-3", "--days must be at least 1"),
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
        "args", [("tail",), ("consent", "show", "--bank", "a", "--account", "b")]
    )
    def test_no_broker_is_a_sentence_not_a_traceback(self, args: tuple[str, ...]) -> None:
        """Without a broker a tool says where it looked and what to do, and exits 1 (aiokafka
        still logs its own connection error above it)."""
        result = run(*args, PASSERELLE_BOOTSTRAP="127.0.0.1:1")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"passerelle {args[0]}: cannot reach Kafka at 127.0.0.1:1" in result.stderr


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
        assert "compatible: every version of 5 subjects" in result.stdout

    def test_topics_list_shows_the_catalog(self) -> None:
        """The catalog can be read without a broker."""
        result = run("topics", "list", "--bank", "demo")
        assert result.returncode == 0
        assert "bank.demo.transactions.v1" in result.stdout and "consents.v1" in result.stdout
