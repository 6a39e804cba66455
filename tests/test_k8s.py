"""The Kubernetes files (hub/k8s/): what can be checked without a cluster. Nothing here deploys."""

from __future__ import annotations

import re
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


def test_dockerfile_installs_the_locked_course():
    """The image installs lock/all.txt with its hashes (the lock `make test` installs), then this repository
    without resolving anything more, and sets the same exchange."""
    text = (K8S / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert ":" in base and not base.endswith(":latest"), base
    install = re.search(r"^RUN (.+?)(?=^\S|\Z)", text, re.M | re.S).group(1)
    assert "--require-hashes" in install and "-r /opt/course/lock/all.txt" in install
    assert "--no-deps -e /opt/course" in install, "the course itself adds no unlocked package"
    assert not re.search(r"\btorch==", install), "torch comes from the lock, not a separate pin"
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    assert f"COURSE_EXCHANGE={values['singleuser']['extraEnv']['COURSE_EXCHANGE']}" in text


def test_the_formgrader_service_is_defined():
    """hub/k8s/formgrader.yaml defines the `course-formgrader` that the values name: a Service at the URL
    the hub proxies, a pod running jupyterhub-singleuser as that service with the token the chart keeps
    for it, the course image, the course's budget and the same exchange volume as the students'."""
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    docs = {d["kind"]: d for d in yaml.safe_load_all((K8S / "formgrader.yaml").read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "Deployment", "Service"}
    [(name, service)] = values["hub"]["services"].items()
    role = values["hub"]["loadRoles"]["instructors"]
    assert f"access:services!service={name}" in role["scopes"] and role["groups"] == ["instructors"]
    host, port = re.fullmatch(r"http://([a-z-]+):(\d+)", service["url"]).groups()
    assert docs["Service"]["metadata"]["name"] == host == name
    assert [p["port"] for p in docs["Service"]["spec"]["ports"]] == [int(port)]
    pod = docs["Deployment"]["spec"]["template"]
    assert docs["Service"]["spec"]["selector"] == pod["metadata"]["labels"]
    [container] = pod["spec"]["containers"]
    single = values["singleuser"]
    assert container["image"] == f"{single['image']['name']}:{single['image']['tag']}"
    assert container["command"][0] == "jupyterhub-singleuser" and f"--port={port}" in container["command"]
    env = {e["name"]: e for e in container["env"]}
    assert env["JUPYTERHUB_SERVICE_NAME"]["value"] == name
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == f"/services/{name}/"
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": f"hub.services.{name}.apiToken"}
    assert env["COURSE_EXCHANGE"]["value"] == single["extraEnv"]["COURSE_EXCHANGE"]
    assert "labconfig/student" not in env["JUPYTER_CONFIG_PATH"]["value"], "instructors get the formgrader"
    assert container["resources"]["limits"] == {"cpu": single["cpu"]["limit"], "memory": single["memory"]["limit"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]}
    student_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in single["storage"]["extraVolumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert claims["nbgrader-exchange"] == student_claims["nbgrader-exchange"]
    assert mounts["nbgrader-exchange"] == env["COURSE_EXCHANGE"]["value"]
    assert claims["course"] == docs["PersistentVolumeClaim"]["metadata"]["name"], "the course folder has its own volume"
