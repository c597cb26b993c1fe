"""The compose stack, checked without a Docker engine: valid against the Compose Specification's
JSON schema (vendored by check-jsonschema), pinned images, mounted paths that exist, loopback
ports, and an ingest job whose command really creates the bucket and ingests a catalogue."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from origin.s3 import open_s3_client
from tests.config import artifacts
from tests.conftest import S3Target, make_settings

COMPOSE = artifacts.REPO / "config/compose/compose.yaml"
# An image is pinned when it names a version (not latest) or a digest.
PINNED = re.compile(r"^[\w./-]+(?::(?!latest$)[\w][\w.-]*)?(?:@sha256:[0-9a-f]{64})?$")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath(
        "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_stack_has_the_services_the_issue_lists() -> None:
    services = compose()["services"]
    assert set(services) == {
        "minio",
        "ingest",
        "edge-se",
        "edge-de",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    for name, region in (("edge-se", "se"), ("edge-de", "de")):
        edge = services[name]
        assert edge["command"] == ["serve", "--config", f"/etc/encore/regions/{region}.toml"]
        assert (artifacts.REPO / f"config/regions/{region}.toml").is_file()
        assert any(v.endswith(":/var/cache/encore") for v in edge["volumes"])  # the disk tier
    assert services["ingest"]["restart"] == "no"
    edge_deps = services["edge-se"]["depends_on"]["ingest"]
    assert edge_deps["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(compose()["services"]))
def test_every_image_is_pinned_or_built_from_the_repo(name: str) -> None:
    service = compose()["services"][name]
    if "build" in service:
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert (context / service["build"]["dockerfile"]).is_file()
        assert context == artifacts.REPO
        return
    image = service["image"]
    assert PINNED.fullmatch(image), image
    assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{image}: no tag"


@pytest.mark.parametrize("name", sorted(compose()["services"]))
def test_every_mounted_path_exists_in_the_repo_and_volumes_are_declared(name: str) -> None:
    document = compose()
    for volume in document["services"][name].get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith("."):
            assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"
        else:
            assert source in document["volumes"], f"{name}: volume {source} not declared"


def test_every_port_is_on_loopback_and_used_once() -> None:
    host_ports = []
    for service in compose()["services"].values():
        for port in service.get("ports", []):
            host, published, _ = port.split(":")
            assert host == "127.0.0.1", port
            host_ports.append(published)
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_the_mounts_are_where_the_configs_expect_them() -> None:
    services = compose()["services"]
    prometheus = yaml.safe_load((artifacts.REPO / "config/prometheus/prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert "../prometheus/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
    targets = {
        target
        for job in prometheus["scrape_configs"]
        if job["job_name"] == "encore-edge"
        for config in job["static_configs"]
        for target in config["targets"]
    }
    assert targets == {"edge-se:8080", "edge-de:8080"}
    (alertmanagers,) = prometheus["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]
    grafana = services["grafana"]["volumes"]
    assert "../grafana/dashboards:/var/lib/grafana/dashboards/encore:ro" in grafana
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in grafana


def test_alertmanager_routes_critical_to_the_pager_and_warning_to_tickets() -> None:
    config = yaml.safe_load((artifacts.REPO / "config/compose/alertmanager.yml").read_text())
    routes = {tuple(r["matchers"]): r["receiver"] for r in config["route"]["routes"]}
    assert routes == {('severity="critical"',): "page", ('severity="warning"',): "ticket"}
    assert {r["name"] for r in config["receivers"]} == {"page", "ticket"}


def test_the_ingest_job_creates_the_bucket_and_ingests_a_catalogue(
    s3: S3Target, tmp_path: Path
) -> None:
    """The job's own shell command, against the test S3 server, with a one-track catalogue."""
    ingest = compose()["services"]["ingest"]
    (command,) = ingest["command"]
    assert "--tracks 8 --durations 30-90" in command
    command = command.replace("--tracks 8 --durations 30-90", "--tracks 1 --durations 2-2")
    bucket = f"compose-{os.getpid()}"
    env = {
        **os.environ,
        **{k: str(v) for k, v in ingest["environment"].items()},
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "ENCORE_ORIGIN__ENDPOINT_URL": s3.endpoint_url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = command.replace("Bucket='audio'", f"Bucket='{bucket}'").replace(
        "'audio' in names", f"'{bucket}' in names"
    )
    env["ENCORE_ORIGIN__BUCKET"] = bucket
    for _ in range(2):  # a second run finds the bucket and the tracks already there
        result = subprocess.run(
            [*ingest["entrypoint"], command],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()

    async def manifests() -> list[str]:
        settings = make_settings(s3.endpoint_url, bucket)
        async with open_s3_client(settings.origin) as client:
            listing = await client.list_objects_v2(Bucket=bucket, Prefix="tracks/")
            return [o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".json")]

    assert len(asyncio.run(manifests())) == 1
