"""Settings come from PASSERELLE_* variables, once, frozen; bad values fail in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streams.errors import SettingsError
from streams.settings import LocalKafkaSettings, Settings


class TestSettings:
    def test_defaults_reach_a_local_plaintext_broker(self) -> None:
        """With no variables set, a worker talks PLAINTEXT to 127.0.0.1:9092, exactly once."""
        s = Settings.from_env({})
        assert (s.bootstrap_servers, s.security_protocol, s.processing_guarantee) == (
            "127.0.0.1:9092",
            "PLAINTEXT",
            "exactly_once",
        )

    def test_variables_override_defaults(self) -> None:
        """Each PASSERELLE_* variable sets its field."""
        s = Settings.from_env(
            {
                "PASSERELLE_BOOTSTRAP": "10.0.0.1:9093",
                "PASSERELLE_PARTITIONS": "12",
                "PASSERELLE_GUARANTEE": "at_least_once",
                "PASSERELLE_DATA_DIR": "/var/lib/p",
                "PASSERELLE_WEB_HOST": "0.0.0.0",
                "PASSERELLE_LOG_FORMAT": "json",
                "PASSERELLE_MAX_BATCH": "500",
            }
        )
        assert (s.bootstrap_servers, s.partitions, s.processing_guarantee, s.data_dir) == (
            "10.0.0.1:9093",
            12,
            "at_least_once",
            Path("/var/lib/p"),
        )
        assert (s.web_host, s.log_format, s.max_batch) == ("0.0.0.0", "json", 500)

    def test_settings_are_frozen(self) -> None:
        """Nothing can change settings after start-up."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            Settings().partitions = 3  # type: ignore[misc]  # the assignment is the point

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"PASSERELLE_PARTITIONS": "four"}, "PASSERELLE_PARTITIONS must be a whole number"),
            ({"PASSERELLE_PARTITIONS": "0"}, "PASSERELLE_PARTITIONS must be >= 1"),
            ({"PASSERELLE_MAX_BATCH": "0"}, "PASSERELLE_MAX_BATCH must be from 1 to 100000"),
            ({"PASSERELLE_WEB_PORT": "70000"}, "PASSERELLE_WEB_PORT must be from 1 to 65535"),
            ({"PASSERELLE_GUARANTEE": "maybe_once"}, "PASSERELLE_GUARANTEE must be one of"),
            ({"PASSERELLE_LOG_FORMAT": "xml"}, "PASSERELLE_LOG_FORMAT must be one of"),
            ({"PASSERELLE_SECURITY_PROTOCOL": "SASL_SSL"}, "needs PASSERELLE_SASL_USERNAME"),
        ],
    )
    def test_a_bad_value_names_its_variable(self, env: dict[str, str], message: str) -> None:
        """A malformed variable raises SettingsError whose one line names the variable."""
        with pytest.raises(SettingsError, match=message) as caught:
            Settings.from_env(env)
        assert "\n" not in str(caught.value)

    def test_secrets_stay_out_of_repr(self) -> None:
        """The SASL password and hash key never appear when settings are printed or logged."""
        s = Settings.from_env(
            {
                "PASSERELLE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "PASSERELLE_SASL_USERNAME": "bank-a",
                "PASSERELLE_SASL_PASSWORD": "hunter2-secret",
                "PASSERELLE_HASH_KEY": "k-secret-123",
            }
        )
        assert "hunter2-secret" not in repr(s) and "k-secret-123" not in repr(s)
        assert not s.hash_key_is_default

    def test_the_dev_hash_key_is_flagged(self) -> None:
        """Without PASSERELLE_HASH_KEY the development key is used, and says so."""
        assert Settings.from_env({}).hash_key_is_default


class TestLocalKafkaSettings:
    def test_ports_and_folders_are_configurable(self) -> None:
        """The local broker's port, run folder and cache follow their variables."""
        s = LocalKafkaSettings.from_env(
            {
                "PASSERELLE_KAFKA_PORT": "9300",
                "PASSERELLE_KAFKA_DIR": "/tmp/k",
                "PASSERELLE_CACHE_DIR": "/tmp/c",
            }
        )
        assert (s.port, s.run_dir, s.cache_dir) == (9300, Path("/tmp/k"), Path("/tmp/c"))

    def test_the_cache_follows_xdg(self) -> None:
        """Kafka's jars are cached under $XDG_CACHE_HOME/passerelle when it is set."""
        assert LocalKafkaSettings.from_env({"XDG_CACHE_HOME": "/x"}).cache_dir == Path(
            "/x/passerelle"
        )
