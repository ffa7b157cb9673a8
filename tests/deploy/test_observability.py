"""The observability kit (deploy/observability): the alert rules pass ``promtool check rules``
and their unit tests (``promtool test rules``), the scrape configuration passes ``promtool
check config`` and keeps each Kubernetes pod in its job, every metric the rules and the Grafana
dashboard query is one the processes really expose (with the labels they group by), every
alert has a severity, a summary, a runbook in docs/operations.md and a test that fires it and
one that does not, and the dashboard imports anywhere (its data source a variable).

Needs promtool (Debian's prometheus package, installed by deploy/local/setup.sh): the promtool
tests are skipped without it, and fail without it when ``CI`` is set. No servers."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "observability" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "tuoyu.json"
OPERATIONS = ROOT / "docs" / "operations.md"
K8S_BASE = ROOT / "deploy" / "k8s" / "base"

#: Where the processes declare their metrics.
SOURCES = (
    ROOT / "shared" / "tuoyu_shared" / "metrics.py",
    ROOT / "shared" / "tuoyu_shared" / "worker_http.py",
    ROOT / "services" / "gateway" / "tuoyu_gateway" / "app.py",
    ROOT / "services" / "dashboard" / "tuoyu_dashboard" / "service.py",
    ROOT / "services" / "credit" / "tuoyu_credit" / "inquiries.py",
)
#: The runbook anchors of docs/operations.md the alerts may point to.
ANCHORS = {"relay-lag", "consumer-lag", "dead-letters", "errors", "refusals", "database",
           "worker-parts", "process-down", "read-models", "background-checks"}
SEVERITIES = {"page", "ticket"}
JOBS = {"service": "tuoyu-service", "worker": "tuoyu-worker", "gateway": "tuoyu-gateway"}
#: Labels Prometheus puts on every series: its own, and the scrape configuration's.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "app"}
#: The dashboard's data source, everywhere.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

METRIC_CLASSES = {"Counter": "counter", "CounterMetricFamily": "counter",
                  "Histogram": "histogram", "HistogramMetricFamily": "histogram",
                  "Gauge": "gauge", "GaugeMetricFamily": "gauge", "_gauge": "gauge",
                  "Summary": "summary", "SummaryMetricFamily": "summary"}


# ---- promtool -----------------------------------------------------------------------------

def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed: deploy/local/setup.sh installs it "
                        "(Debian's prometheus package)")
        pytest.skip("promtool is not installed (deploy/local/setup.sh installs Debian's "
                    "prometheus package)")
    return path


def run_promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")


def test_promtool_checks_the_rules():
    result = run_promtool("check", "rules", ALERTS.name)
    assert_ok(result)
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    assert_ok(run_promtool("test", "rules", ALERT_TESTS.name))


def _without_kubernetes_discovery(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration with each job's Kubernetes discovery replaced by a static target,
    everything else (relabelling included) as it is, the rule files by absolute path."""
    copy = json.loads(json.dumps(config))
    for job in copy["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["10.0.0.1:8000"]}]
    copy["rule_files"] = [str(PROMETHEUS / f) for f in config["rule_files"]]
    return copy


def test_promtool_checks_the_scrape_configuration(tmp_path):
    result = run_promtool("check", "config", CONFIG.name)
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian builds Prometheus without Kubernetes discovery (too many dependencies):
        # check everything else with promtool, and the discovery's shape here.
        config = yaml.safe_load(CONFIG.read_text())
        for job in config["scrape_configs"]:
            assert job["kubernetes_sd_configs"] == [
                {"role": "pod", "namespaces": {"names": ["tuoyu", "tuoyu-local"]}}], job
        copy = tmp_path / "prometheus.yml"
        copy.write_text(yaml.safe_dump(_without_kubernetes_discovery(config)))
        result = run_promtool("check", "config", str(copy), cwd=tmp_path)
    assert_ok(result)
    assert "SUCCESS: 1 rule files found" in result.stdout


def _commented_static_configuration() -> dict[str, Any]:
    """The commented alternative at the end of prometheus.yml (`make run`'s ports)."""
    lines = CONFIG.read_text().splitlines()
    start = lines.index("# scrape_configs:")
    block = [line.removeprefix("#").removeprefix(" ") for line in lines[start:]
             if line.startswith("#")]
    return yaml.safe_load("\n".join(block))


def test_the_commented_static_alternative_scrapes_make_runs_ports(tmp_path):
    static = _commented_static_configuration()
    targets = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
               for job in static["scrape_configs"]}
    assert targets == {
        "tuoyu-gateway": ["127.0.0.1:8000"],
        "tuoyu-service": [f"127.0.0.1:{p}" for p in range(8001, 8006)],
        "tuoyu-worker": [f"127.0.0.1:{p}" for p in range(9101, 9106)],
    }
    config = yaml.safe_load(CONFIG.read_text())
    config["scrape_configs"] = static["scrape_configs"]
    config["rule_files"] = [str(PROMETHEUS / f) for f in config["rule_files"]]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    assert_ok(run_promtool("check", "config", str(copy), cwd=tmp_path))


def test_the_dashboards_queries_are_promql(tmp_path):
    """Every panel's expression parses (checked by promtool as a recording rule, with the
    dashboard's variables set as Grafana would)."""
    recorded = []
    for panel in data_panels():
        for target in panel["targets"]:
            expr = (target["expr"].replace("$__rate_interval", "5m")
                    .replace("${service}", ".*").replace("$service", ".*"))
            recorded.append({"record": f"grafana:panel_{panel['id']}_{target['refId']}",
                             "expr": expr})
    rules_file = tmp_path / "grafana.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "grafana",
                                                      "rules": recorded}]}))
    assert_ok(run_promtool("check", "rules", str(rules_file), cwd=tmp_path))


# ---- the rules and their tests -------------------------------------------------------------

def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
            for rule in group["rules"]]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules()}


def test_every_alert_has_a_severity_a_summary_and_a_runbook():
    problems = []
    for rule in rules():
        name = rule.get("alert")
        if name is None:
            problems.append(f"a recording rule: {rule}")
            continue
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {rule.get('labels', {}).get('severity')!r}")
        annotations = rule.get("annotations", {})
        if not annotations.get("summary", "").strip():
            problems.append(f"{name}: no summary")
        runbook = annotations.get("runbook", "")
        page, _, anchor = runbook.partition("#")
        if page != "docs/operations.md" or anchor not in ANCHORS:
            problems.append(f"{name}: runbook {runbook!r}")
    assert not problems, problems
    assert alert_names() >= {
        "TuoyuRelayLagging", "TuoyuRelayStalled", "TuoyuConsumerLagging", "TuoyuParkedMessages",
        "TuoyuHeldMessages", "TuoyuHighErrorRate", "TuoyuRefusalSpike", "TuoyuDatabaseDown",
        "TuoyuWorkerPartDown", "TuoyuProcessDown", "TuoyuProjectionLagging",
        "TuoyuBackgroundChecksPending"}


def test_the_runbook_anchors_are_listed_atop_the_rules_and_headings_of_the_guide():
    header = ALERTS.read_text().split("\ngroups:", 1)[0]
    listed = set(re.findall(r"^#\s+([a-z]+(?:-[a-z]+)*)\s{2,}\S", header, re.M))
    assert listed == ANCHORS
    # GitHub's anchors of the guide's headings (lowercased, punctuation dropped, spaces to -).
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS.read_text(), re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
    assert ANCHORS <= slugs, sorted(ANCHORS - slugs)


def alert_rule_tests() -> Iterator[dict[str, Any]]:
    for group in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        yield from group.get("alert_rule_test", [])


def test_every_alert_is_tested_firing_and_silent():
    assert yaml.safe_load(ALERT_TESTS.read_text())["rule_files"] == [ALERTS.name]
    firing = {t["alertname"] for t in alert_rule_tests() if t.get("exp_alerts")}
    silent = {t["alertname"] for t in alert_rule_tests() if not t.get("exp_alerts")}
    assert not alert_names() - firing, f"never fired: {sorted(alert_names() - firing)}"
    assert not alert_names() - silent, f"never silent: {sorted(alert_names() - silent)}"
    tested = firing | silent
    assert not tested - alert_names(), f"tests of no alert: {sorted(tested - alert_names())}"


def test_every_firing_test_expects_the_severity_and_every_annotation():
    annotations = {}
    for rule in rules():
        annotations.setdefault(rule["alert"], set()).update(rule["annotations"])
    for test in alert_rule_tests():
        for alert in test.get("exp_alerts") or []:
            assert alert["exp_labels"]["severity"] in SEVERITIES, test
            assert set(alert["exp_annotations"]) == annotations[test["alertname"]], test


# ---- the metrics the processes expose ------------------------------------------------------

def _strings(node: ast.AST | None, assignments: dict[str, ast.AST]) -> list[str] | None:
    if isinstance(node, ast.Name):
        node = assignments.get(node.id)
    if isinstance(node, ast.List | ast.Tuple) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]
    return None


def exposed_names(name: str, kind: str) -> list[str]:
    if kind == "counter":
        base = name.removesuffix("_total")
        return [f"{base}_total", f"{base}_created"]
    if kind == "histogram":
        return [f"{name}{s}" for s in ("_bucket", "_sum", "_count", "_created")]
    if kind == "summary":
        return [name, f"{name}_sum", f"{name}_count", f"{name}_created"]
    return [name]


def declared_in_source() -> dict[str, set[str] | None]:
    """The metrics the source files declare (``Counter("name", doc, labels)``, ``_gauge``,
    ``GaugeMetricFamily``...), as exposed, with their labels (None: not known statically)."""
    found: dict[str, set[str] | None] = {}
    for source in SOURCES:
        tree = ast.parse(source.read_text(), str(source))
        assignments = {t.id: node.value for node in ast.walk(tree)
                       if isinstance(node, ast.Assign) for t in node.targets
                       if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if called not in METRIC_CLASSES or not (
                    isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            labels_node = next((k.value for k in node.keywords
                                if k.arg in ("labels", "labelnames")),
                               node.args[2] if len(node.args) > 2 else None)
            labels = _strings(labels_node, assignments)
            kind = METRIC_CLASSES[called]
            for exposed in exposed_names(first.value, kind):
                extra = {"le"} if exposed.endswith("_bucket") else set()
                found[exposed] = None if labels is None else set(labels) | extra
    return found


class _NoTables:
    """A database connection in which no table exists yet."""

    def execute(self, *args: Any) -> _NoTables:
        return self

    def fetchone(self) -> tuple:
        return (None,)

    def fetchall(self) -> list:
        return []


def collected() -> dict[str, set[str]]:
    """The metrics the processes' code yields when collected (labels from samples only)."""
    from prometheus_client import REGISTRY
    from tuoyu_gateway.app import Metrics

    import tuoyu_credit.inquiries  # noqa: F401 (registers the background check metrics)
    from tuoyu_shared.metrics import consumer_families
    from tuoyu_shared.worker_http import WorkerHttp

    families = [*REGISTRY.collect(), *Metrics().registry.collect(),
                *WorkerHttp("registration").collect(),
                *consumer_families("registration", _NoTables())]
    found: dict[str, set[str]] = {}
    for family in families:
        for name in exposed_names(family.name, family.type):
            found.setdefault(name, set())
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def known_metrics() -> dict[str, set[str] | None]:
    """Every metric a Tuoyu process exposes, with its labels where known, and Prometheus's."""
    known: dict[str, set[str] | None] = dict(collected())
    known.update({name: labels for name, labels in declared_in_source().items()
                  if labels is not None or name not in known})
    known.setdefault("tuoyu_consumer_lag_events", {"service", "consumer", "upstream"})
    known["up"] = set()
    return known


def test_the_source_parse_finds_every_metric_collected():
    collected_tuoyu = {n for n in collected() if n.startswith("tuoyu_")}
    missing = collected_tuoyu - set(declared_in_source())
    assert not missing, f"collected, not found in the sources: {sorted(missing)}"
    for name in ("process_resident_memory_bytes", "process_open_fds",
                 "tuoyu_consumer_lag_events", "tuoyu_requests_total",
                 "tuoyu_gateway_requests_total", "tuoyu_worker_part_up"):
        assert name in known_metrics(), name


# ---- PromQL --------------------------------------------------------------------------------

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?(?:ms|[smhdwy])*)"
                    r"(?![\w:])")
IDENTIFIER = re.compile(r"(?<![\w:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def parse_promql(expr: str) -> tuple[set[str], list[tuple[str | None, str]], set[str]]:
    """(metric names, (metric or None, label) of each label matcher, labels of the grouping
    clauses) of an expression; Grafana's variables count as strings."""
    expr = re.sub(r"\$\{?\w+(?::\w+)?\}?", "0", STRING.sub('""', expr))
    matchers = [(m.group(1), label) for m in SELECTOR.finditer(expr)
                for label in MATCHER_LABEL.findall(m.group(2))]
    names = {m.group(1) for m in SELECTOR.finditer(expr) if m.group(1)}
    expr = SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", expr)
    grouped = {label.strip() for m in GROUPING.finditer(expr)
               for label in m.group(2).split(",") if label.strip()}
    expr = GROUPING.sub(" ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = NUMBER.sub(" ", expr)
    names |= {n for n in IDENTIFIER.findall(expr) if n not in KEYWORDS}
    return names, matchers, grouped


def test_the_promql_parse():
    names, matchers, grouped = parse_promql(
        'histogram_quantile(0.95, sum by (le, service) (rate(tuoyu_request_duration_seconds'
        '_bucket{service=~"$service", outcome!="ok"}[5m]))) > 0.5 and on (service) '
        'max by (service) (up offset 10m) or vector(1) * 2e3 + count without (pod) '
        '(x:y{exchange=~"(${service})[.]events"} @ 100)')
    assert names == {"tuoyu_request_duration_seconds_bucket", "up", "x:y"}
    assert sorted(matchers) == [("tuoyu_request_duration_seconds_bucket", "outcome"),
                                ("tuoyu_request_duration_seconds_bucket", "service"),
                                ("x:y", "exchange")]
    assert grouped == {"le", "service", "pod"}


def queries() -> Iterator[tuple[str, str]]:
    """(where, expression) of every alert rule and dashboard panel."""
    for rule in rules():
        yield f"alerts.yml {rule['alert']}", rule["expr"]
    for panel in data_panels():
        for target in panel["targets"]:
            yield f"tuoyu.json panel {panel['id']} {panel['title']!r}", target["expr"]


def test_every_metric_queried_is_exposed_with_the_labels_used():
    known = known_metrics()
    unknown, bad_labels = [], []
    for where, expr in queries():
        names, matchers, grouped = parse_promql(expr)
        unknown += [f"{where}: {n}" for n in sorted(names - set(known))]
        labels_of = {n: known.get(n) for n in names}
        for metric, label in matchers:
            if label == "__name__" or label in TARGET_LABELS:
                continue
            labels = labels_of.get(metric) if metric else None
            if labels is not None and label not in labels:
                bad_labels.append(f"{where}: {metric} has no label {label!r}")
        if any(labels is None for labels in labels_of.values()):
            continue  # a metric whose labels the code does not say statically
        union = set().union(*labels_of.values()) | TARGET_LABELS
        bad_labels += [f"{where}: no metric of {sorted(names)} has label {label!r}"
                       for label in sorted(grouped - union)]
    assert not unknown, "metrics no process exposes:\n" + "\n".join(unknown)
    assert not bad_labels, "\n".join(bad_labels)


# ---- the scrape configuration and the Kubernetes pods --------------------------------------

def relabel(rules_: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's keep, drop and replace relabelling (the actions the configuration uses);
    None when the target is dropped."""
    labels = dict(labels)
    for rule in rules_:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(
            labels.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and match is None or action == "drop" and match is not None:
            return None
        if action == "replace" and match is not None:
            replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            result = match.expand(replacement)
            if result:
                labels[rule["target_label"]] = result
            else:
                labels.pop(rule["target_label"], None)
        elif action not in ("keep", "drop", "replace"):
            raise AssertionError(f"relabel action {action!r} not simulated")
    return labels


def pod_templates() -> Iterator[tuple[str, dict[str, Any], int | None]]:
    """(name, template metadata, first container port) of every workload in deploy/k8s/base."""
    for path in sorted(K8S_BASE.glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("Deployment", "StatefulSet", "Job"):
                continue
            template = doc["spec"]["template"]
            ports = [p["containerPort"] for c in template["spec"]["containers"]
                     for p in c.get("ports", [])]
            yield doc["metadata"]["name"], template["metadata"], ports[0] if ports else None


def test_each_tuoyu_pod_is_scraped_by_its_components_job():
    if not K8S_BASE.is_dir():
        pytest.skip("no deploy/k8s/base")
    jobs = {job["job_name"]: job for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]}
    assert set(jobs) == set(JOBS.values())
    seen = set()
    for name, metadata, port in pod_templates():
        labels = metadata.get("labels", {})
        annotations = metadata.get("annotations", {})
        meta = {"__address__": f"10.1.2.3:{port}" if port else "10.1.2.3",
                "__meta_kubernetes_pod_ip": "10.1.2.3",
                "__meta_kubernetes_namespace": "tuoyu",
                "__meta_kubernetes_pod_name": f"{name}-7d9f-abcde",
                "__meta_kubernetes_pod_phase": "Running",
                "__meta_kubernetes_pod_container_init": "false",
                "__metrics_path__": "/metrics"}
        meta |= {"__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
                 for k, v in labels.items()}
        meta |= {"__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
                 for k, v in annotations.items()}
        kept = {job_name: relabel(job["relabel_configs"], {**meta, "job": job_name})
                for job_name, job in jobs.items()}
        kept = {job_name: target for job_name, target in kept.items() if target is not None}
        component = labels.get("app.kubernetes.io/component")
        if component in JOBS and annotations.get("prometheus.io/scrape") == "true":
            seen.add(component)
            assert list(kept) == [JOBS[component]], (name, list(kept))
            target = kept[JOBS[component]]
            assert target["__address__"] == f"10.1.2.3:{annotations['prometheus.io/port']}"
            assert target["__metrics_path__"] == annotations.get("prometheus.io/path",
                                                                 "/metrics")
            assert target["namespace"] == "tuoyu" and target["pod"].startswith(name)
            assert "service" not in target  # the series' own label
        else:
            assert not kept, (name, list(kept))
    assert seen == set(JOBS)


# ---- the Grafana dashboard -----------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])  # a collapsed row's
    return panels


def data_panels() -> list[dict[str, Any]]:
    return [p for p in all_panels() if p["type"] != "row"]


def test_the_dashboard_loads_with_unique_panel_ids_and_a_query_in_each_panel():
    board = dashboard()
    assert board["uid"] == "tuoyu-overview"
    assert board["schemaVersion"] == 39
    ids = [p["id"] for p in all_panels()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for panel in data_panels():
        assert panel.get("title"), panel["id"]
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), (panel["title"], target)
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_dashboard_shows_what_ops_watch():
    exprs = " ".join(t["expr"] for p in data_panels() for t in p["targets"])
    for name in ("tuoyu_requests_total", "tuoyu_request_duration_seconds_bucket",
                 "tuoyu_gateway_requests_total", "tuoyu_gateway_request_seconds_bucket",
                 "tuoyu_gateway_refusals_total", "tuoyu_relay_published_total",
                 "tuoyu_log_head", "tuoyu_relay_position", "tuoyu_relay_lag",
                 "tuoyu_consumer_lag_events", "tuoyu_parked_messages", "tuoyu_held_messages",
                 "tuoyu_worker_part_up", "tuoyu_database_up", "process_resident_memory_bytes",
                 "process_open_fds", "tuoyu_projection_lag_seconds",
                 "tuoyu_background_checks_pending"):
        assert name in exprs, name
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, service) (rate(tuoyu_request_duration" \
               in exprs, q


def _datasources(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)


def test_the_dashboards_data_source_is_a_variable():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    service = variables["service"]
    query = service["query"]
    assert "label_values(tuoyu_log_head, service)" in (
        query["query"] if isinstance(query, dict) else query)
    assert service["datasource"] == DATASOURCE
    for panel in data_panels():
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    refs = list(_datasources(board))
    assert refs and all(ref == DATASOURCE for ref in refs), [
        ref for ref in refs if ref != DATASOURCE]
