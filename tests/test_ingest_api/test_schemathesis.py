"""schemathesis against /openapi.json of the running API: no 5xx for anything, and no 2xx for
input the schema says is invalid (on the single-call endpoints; a batch accepts its valid calls
and lists the invalid ones by design)."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from clickstream.kafka import create_topics

pytestmark = pytest.mark.integration

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def run_schemathesis(url: str, key: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SCHEMATHESIS, "run", f"{url}/openapi.json", "-a", f"{key}:", "-n", "20", "--seed", "7", "--no-color",
         "--phases", "coverage,fuzzing", "--request-timeout", "10", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,  # it keeps a cache in its working directory
    )


def test_no_server_errors_and_no_success_for_invalid_input(settings_factory, free_ports, running_api, tmp_path):
    settings = settings_factory(api_port=free_ports())
    asyncio.run(create_topics(settings))
    url = running_api(settings)
    key = settings.demo_write_key

    single = run_schemathesis(url, key, tmp_path, "-c", "not_a_server_error,negative_data_rejection",
                              "--include-path-regex", "^/v1/(track|page|screen|identify|group|alias)$")
    assert single.returncode == 0, single.stdout[-4000:]
    assert "No issues found" in single.stdout
    batch = run_schemathesis(url, key, tmp_path, "-c", "not_a_server_error", "--include-path", "/v1/batch")
    assert batch.returncode == 0, batch.stdout[-4000:]
    assert "No issues found" in batch.stdout
