"""The routes files the repository ships (the example and the Kubernetes ConfigMap's) load:
a deployment that copies them must start."""

from pathlib import Path

import yaml

from app.routing import load_routing_table
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


def table_entries(path: Path) -> list[tuple[str | None, str]]:
    table = load_routing_table(path, make_settings())
    return [(number, route.name) for number, _, _, route in table.entries()]


def test_the_kubernetes_configmap_routes_file_loads(tmp_path: Path) -> None:
    manifest = yaml.safe_load((ROOT / "deploy/kubernetes/configmap-routes.yaml").read_text())
    routes = tmp_path / "routes.yaml"
    routes.write_text(manifest["data"]["routes.yaml"])
    assert table_entries(routes) == [
        ("+15005550001", "sales"),
        ("+15005550002", "support"),
        ("+15005550003", "blocked"),
        (None, "default"),
    ]
