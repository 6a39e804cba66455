"""The Kubernetes files (hub/k8s/): what can be checked without a cluster. Nothing here deploys."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "hub" / "k8s"


def test_values_file_parses_and_names_the_course_settings():
    """Zero to JupyterHub's values: a pinned image, the course's CPU and memory budget, culling, the exchange."""
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    single = values["singleuser"]
    assert single["image"]["name"] and single["image"]["tag"] not in ("", "latest")
    assert single["cpu"]["limit"] == 2 and single["memory"]["limit"] == "4G"
    assert values["cull"]["enabled"] is True and values["cull"]["timeout"] > 0
    mounts = {m["mountPath"] for m in single["storage"]["extraVolumeMounts"]}
    exchange = single["extraEnv"]["COURSE_EXCHANGE"]
    assert exchange in mounts, "the exchange the servers are told about is the shared volume"
    assert "labconfig/student" in single["extraEnv"]["JUPYTER_CONFIG_PATH"], "students get course lab's settings"
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"].startswith("ltiauthenticator.lti13")


def test_dockerfile_installs_the_pinned_course():
    """The image installs this repository with its hub extra and the pinned torch, and sets the same exchange."""
    text = (K8S / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert ":" in base and not base.endswith(":latest"), base
    torch = [d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
             if d.startswith("torch")]
    assert torch[0] in text and '"/opt/course[hub]"' in text
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    assert f"COURSE_EXCHANGE={values['singleuser']['extraEnv']['COURSE_EXCHANGE']}" in text
