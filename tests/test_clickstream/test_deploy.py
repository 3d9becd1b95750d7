"""deploy/: the systemd units run real `clickstream` subcommands with real settings, and the example
env file is one the settings accept."""

import configparser
import re
import shlex
from pathlib import Path

import pytest

from clickstream.cli import cli
from clickstream.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# What each template is instantiated with in the README's instructions.
INSTANCES = {"clickstream@.service": ["sink", "reactor", "dashboard"], "clickstream-api@.service": ["8001"],
             "clickstream-processor@.service": ["6066"], "clickstream-topics.service": [""]}
SETTING = re.compile(r"^CLICKSTREAM_([A-Z0-9_]+)$")


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def setting_names(names) -> list[str]:
    fields = set(Settings.model_fields)
    unknown = [n for n in names if not (m := SETTING.match(n)) or m.group(1).lower() not in fields]
    return unknown


def test_every_unit_is_listed():
    assert sorted(p.name for p in UNITS) == sorted(INSTANCES)


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_run_real_subcommands_with_real_settings(path):
    service = unit(path)["Service"]
    assert service["User"] == "clickstream" and service["EnvironmentFile"] == "/etc/clickstream/clickstream.env"
    environment = dict(item.split("=", 1) for item in shlex.split(service.get("Environment", "")))
    assert setting_names(environment) == []
    for instance in INSTANCES[path.name]:
        binary, command, *args = shlex.split(service["ExecStart"].replace("%i", instance))
        assert binary.endswith("/bin/clickstream") and command in cli.commands, service["ExecStart"]
        cli.commands[command].make_context(command, args)  # the arguments parse as they would at start
        Settings(_env_file=None, **{SETTING.match(k).group(1).lower(): v.replace("%i", instance or "1")
                                    for k, v in environment.items()})


def test_example_env_file_holds_only_real_settings_and_loads():
    names = [line.split("=", 1)[0] for line in (DEPLOY / "clickstream.env").read_text().splitlines()
             if line and not line.startswith("#")]
    assert setting_names(names) == []
    settings = Settings(_env_file=DEPLOY / "clickstream.env")
    # nginx on the same host connects from loopback: its X-Forwarded-For must be believed.
    assert "127.0.0.1/32" in settings.trusted_proxies and settings.kafka_idempotent_producer
    assert len(settings.kafka_bootstrap_servers.split(",")) == 3 and settings.topic_replication_factor == 3
    upstream = re.findall(r"server 127\.0\.0\.1:(\d+)", (DEPLOY / "nginx" / "clickstream-api.conf").read_text())
    assert upstream == ["8001", "8002", "8003"]
