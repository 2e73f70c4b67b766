"""Validate the Kubernetes manifests offline: every resource the kustomize base lists, and every
other manifest beside it (the Secret example), against the bundled Kubernetes JSON schemas in
strict mode (unknown fields are errors), for the oldest and newest Kubernetes versions we
support. Also checks that the base's selectors and references point at objects it defines.

Usage: python deploy/validate_kubernetes.py [deploy/kubernetes]   (exit 1 on any error)
"""

import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization_files(base: Path) -> list[Path]:
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    if kustomization.get("kind") != "Kustomization":
        raise SystemExit(f"{base / 'kustomization.yaml'}: kind is not Kustomization")
    return [base / name for name in kustomization.get("resources", [])]


def schema_errors(path: Path, doc: dict[str, Any]) -> list[str]:
    name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            validated = kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path) or "(top)"
            errors.append(f"ERROR {name} (Kubernetes {version}): {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"ERROR {name}: {exc.message}")
        else:
            print(f"ok    {name} against Kubernetes {validated}")
    return errors


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def reference_errors(docs: list[dict[str, Any]]) -> list[str]:
    """Selectors and names that must point at something the base defines."""
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    pod_labels = [
        d["spec"]["template"]["metadata"]["labels"] for d in by_kind.get("Deployment", {}).values()
    ]
    errors = []
    for name, svc in by_kind.get("Service", {}).items():
        if not any(matches(svc["spec"]["selector"], labels) for labels in pod_labels):
            errors.append(f"ERROR Service/{name}: its selector matches no Deployment's pods")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not any(matches(pdb["spec"]["selector"]["matchLabels"], lab) for lab in pod_labels):
            errors.append(f"ERROR PodDisruptionBudget/{name}: its selector matches no pods")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]
        if target["name"] not in by_kind.get(target["kind"], {}):
            errors.append(f"ERROR HorizontalPodAutoscaler/{name}: no {target['kind']} to scale")
    for name, deployment in by_kind.get("Deployment", {}).items():
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            config_map = volume.get("configMap", {}).get("name")
            if config_map and config_map not in by_kind.get("ConfigMap", {}):
                errors.append(f"ERROR Deployment/{name}: ConfigMap {config_map} is not defined")
    return errors


def main(argv: list[str]) -> int:
    base = Path(argv[1] if len(argv) > 1 else Path(__file__).parent / "kubernetes")
    listed = kustomization_files(base)
    others = sorted(set(base.glob("*.yaml")) - set(listed) - {base / "kustomization.yaml"})
    errors: list[str] = []
    rendered: list[dict[str, Any]] = []
    for path in listed + others:
        if not path.is_file():
            errors.append(f"ERROR {path.name}: listed in kustomization.yaml but missing")
            continue
        docs = load_documents(path)
        if path in listed:
            rendered += docs
        for doc in docs:
            errors += schema_errors(path, doc)
    errors += reference_errors(rendered)
    for error in errors:
        print(error)
    print(f"{len(rendered)} resources in the base, {len(others)} other manifest(s): ", end="")
    print(f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
