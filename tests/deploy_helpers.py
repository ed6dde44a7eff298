"""Helpers for the tests of deploy/: the manifests as kustomize renders them, and the routes file."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import yaml

from tests.support import ROOT

DEPLOY = ROOT / "deploy"


def routes_env() -> dict[str, str]:
    """deploy/routes.env as kustomize's ConfigMap generator reads it."""
    lines = [line.strip() for line in (DEPLOY / "routes.env").read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def kustomize_command() -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(DEPLOY)]
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(DEPLOY)]
    raise AssertionError("needs kubectl (or kustomize): apt-get install kubernetes-client")


def render_manifests() -> list[dict[str, Any]]:
    out = subprocess.run(kustomize_command(), capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
