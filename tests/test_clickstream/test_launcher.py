import json
import socket
import subprocess
import sys

from clickstream.settings import Settings
from clickstream.stack.launcher import banner, format_status


def test_up_refuses_a_port_held_by_another_program(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {"CLICKSTREAM_API_PORT": str(port), "CLICKSTREAM_STATE_DIR": str(tmp_path / "state"),
               "PATH": "/usr/bin:/bin"}
        result = subprocess.run([sys.executable, "-m", "clickstream", "up"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"api port {port} already in use" in result.stderr
    assert not (tmp_path / "state" / "run" / "stack.json").exists()


def test_status_when_nothing_runs(tmp_path):
    env = {"CLICKSTREAM_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "clickstream", "status", "--json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert json.loads(result.stdout) == {"running": False, "supervisor_pid": None, "status": "stopped",
                                         "components": {}}


def test_format_status_lists_each_component():
    text = format_status({"running": True, "supervisor_pid": 10, "status": "ready", "components": {
        "api": {"state": "up", "pid": 11, "port": 8000, "url": "http://127.0.0.1:8000"},
        "sink": {"state": "down", "pid": 12, "port": 6068, "url": "http://127.0.0.1:6068"},
    }})
    assert "ready (supervisor pid 10)" in text
    assert "api        up" in text and "sink       down" in text


def test_banner_names_external_services(tmp_path):
    settings = Settings(_env_file=None, kafka_bootstrap_servers="kafka:9092", s3_endpoint="http://minio:9000",
                        demo_write_key="wk_1", state_dir=tmp_path)
    text = banner(settings, {"api": {"url": "http://127.0.0.1:8000"}})
    assert "kafka://kafka:9092 (external)" in text and "http://minio:9000 (external)" in text
    assert "wk_1" in text


def test_seaweedfs_port_pairs_stay_below_the_ephemeral_range():
    """Outgoing connections take their local port from the kernel's ephemeral range, so a port
    chosen there can be gone by the time SeaweedFS binds it."""
    from clickstream.stack.probes import ephemeral_port_low, free_port_pair
    from clickstream.stack.servers import GRPC_OFFSET

    ports = [free_port_pair(GRPC_OFFSET) for _ in range(200)]
    assert max(ports) + GRPC_OFFSET < ephemeral_port_low()
    assert min(ports) >= 10000


def test_seaweedfs_threads_are_go_default_unless_set(tmp_path):
    from clickstream.stack.components import stack_components

    def weed_env_of(**overrides):
        settings = Settings(_env_file=None, state_dir=tmp_path, **overrides)
        return next(c for c in stack_components(settings) if c.name == "s3").env

    assert "GOMAXPROCS" not in weed_env_of()
    assert weed_env_of(s3_server_threads=1)["GOMAXPROCS"] == "1"
