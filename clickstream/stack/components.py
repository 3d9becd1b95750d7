"""What the local stack runs: each component's command, environment, port and readiness probe.

Every service runs through the same ``clickstream <service>`` entry point that a
container or a systemd unit would use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from clickstream.settings import LOOPBACK, Settings
from clickstream.sources import demo_write_key
from clickstream.stack.probes import free_port_pair, http_ok, tcp_open
from clickstream.stack.servers import (
    GRPC_OFFSET,
    WEED_PORT_FLAGS,
    tansu_command,
    tansu_env,
    weed_command,
    weed_env,
)
from clickstream.storage import bucket_exists


# Start order: the S3 server, then the broker (its log lives on S3), then the services.
S3_STAGE, BROKER_STAGE, SERVICES_STAGE = 0, 1, 2


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    port: int
    url: str
    ready: Callable[[], bool] = field(compare=False)
    env: dict[str, str] = field(default_factory=dict)
    # Components in the same stage start together; a stage starts once the previous one is ready.
    stage: int = SERVICES_STAGE


def _service(name: str, port: int, health_path: str, settings: Settings, env: dict[str, str]) -> Component:
    url = settings.url(port)
    return Component(
        name=name,
        command=[sys.executable, "-m", "clickstream", name],
        port=port,
        url=url,
        ready=lambda: http_ok(url + health_path),
        env=env,
    )


def stack_components(settings: Settings) -> list[Component]:
    """The components ``clickstream up`` starts for these settings, in start order."""
    components: list[Component] = []
    if settings.manages_s3:
        weed_ports = {flag: free_port_pair(GRPC_OFFSET) for flag in WEED_PORT_FLAGS}
        components.append(
            Component(
                name="s3",
                command=weed_command(
                    (settings.data_dir / "s3").resolve(),
                    settings.s3_port,
                    [settings.s3_bucket, settings.broker_log_bucket],
                    weed_ports,
                ),
                port=settings.s3_port,
                url=settings.s3_endpoint_url,
                ready=lambda: tcp_open(LOOPBACK, settings.s3_port) and bucket_exists(settings),
                env=weed_env(settings.s3_access_key, settings.s3_secret_key, settings.s3_server_threads),
                stage=S3_STAGE,
            )
        )
    if settings.manages_kafka:
        components.append(
            Component(
                name="broker",
                command=tansu_command(settings.broker_port, settings.broker_log_bucket),
                port=settings.broker_port,
                url=f"kafka://{settings.bootstrap_servers}",
                ready=lambda: tcp_open(LOOPBACK, settings.broker_port),
                env=tansu_env(
                    settings.s3_endpoint_url, settings.s3_access_key, settings.s3_secret_key, settings.s3_region
                ),
                stage=BROKER_STAGE,
            )
        )
    # Services inherit the settings (with the demo key resolved) through the environment.
    env = {**settings.as_env(), "CLICKSTREAM_DEMO_WRITE_KEY": demo_write_key(settings)}
    components += [
        _service("sink", settings.sink_port, "/health", settings, env),
        _service("processor", settings.processor_port, "/health", settings, env),
        _service("reactor", settings.reactor_port, "/health", settings, env),
        _service("api", settings.api_port, "/healthz", settings, env),
        _service("dashboard", settings.dashboard_port, "/_stcore/health", settings, env),
    ]
    return components


def child_env(component: Component) -> dict[str, str]:
    return {**os.environ, **component.env, "PYTHONUNBUFFERED": "1"}
