"""`make run`: private servers, every service, demo data; `make stop` ends it all.

    .venv/bin/python deploy/local/run.py start   # foreground; Ctrl-C stops everything
    .venv/bin/python deploy/local/run.py stop    # from another terminal
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tuoyu_registration.samples import (
    sample_enrolment,
    sample_filing_submission,
    sample_registration,
    sample_resident_id,
)
from tuoyu_shared.auth import KeyRing, generate_key_pem
from tuoyu_shared.broker_users import SUBSCRIBER, create_broker_users, password_store, users_of
from tuoyu_shared.config import ensure_database
from tuoyu_shared.devrun import BACKENDS, SERVICES, ProcessGroup, http_json
from tuoyu_shared.localservers import LocalPostgres, LocalRabbitMQ, port_open
from tuoyu_shared.validation import credit_code_check_character, resident_id_check_character

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = ROOT / ".local" / "run"
PG_PORT, AMQP_PORT = 25432, 25672
PIDS = RUN_DIR / "pids.json"
KEYS = RUN_DIR / "auth-keys.json"
#: The simulated public-security records inquiry's records (the group serves the simulator).
PUBLIC_SECURITY_RECORDS = ROOT / "deploy" / "local" / "public-security-records.json"
#: The broker users' passwords (mode 0600), made on the first `make run` and kept.
BROKER_USERS = RUN_DIR / "broker-users.json"
#: The demo's people: one token each, printed at start (role, district, subject).
DEMO_TOKENS = (
    ("health_officer", "徐汇区", "徐汇区卫健委-张伟"),
    ("health_officer", "*", "市卫健委-李娜"),
    ("market_officer", "徐汇区", "徐汇区市场监管局-王强"),
    ("fire_officer", "徐汇区", "徐汇区消防救援支队-刘洋"),
    ("credit_officer", "*", "市信用办-陈静"),
    ("finance_officer", "*", "区财政局-周洁"),
    ("district_leader", "徐汇区", "徐汇区副区长-赵敏"),
    ("auditor", "*", "市审计局-孙磊"),
    ("subscriber", "*", "省托育服务平台"),
)


def auth_env() -> dict[str, str]:
    """The demo's signing key, made on the first `make run` and kept under .local/run (a
    deployment configures its own: docs/operations.md)."""
    if not KEYS.exists():
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        private, public = generate_key_pem()
        KEYS.write_text(json.dumps({"kid": "demo-1", "private": private, "public": public}))
        KEYS.chmod(0o600)
    keys = json.loads(KEYS.read_text())
    return {"TUOYU_AUTH_SIGNING_KEY": keys["private"], "TUOYU_AUTH_SIGNING_KID": keys["kid"],
            "TUOYU_AUTH_PUBLIC_KEYS": json.dumps({keys["kid"]: keys["public"]}),
            "TUOYU_AUTH_REVOKED_FILE": str(RUN_DIR / "revoked-tokens.txt")}


def broker_env(rabbit: LocalRabbitMQ) -> tuple[dict[str, str], str]:
    """A RabbitMQ user per service (``TUOYU_<SERVICE>_AMQP_URI``) and the subscribers'
    read-only one (tuoyu_shared.broker_users); the guest user is deleted. Returns the
    environment and the subscriber's URI."""
    services = [spec.name for spec in SERVICES]
    uris = create_broker_users(rabbit, "/", services, delete_guest=True,
                               passwords=password_store(BROKER_USERS, users_of(services)))
    env = {f"TUOYU_{service.upper()}_AMQP_URI": uris[service] for service in services}
    # The shared fallback is the gateway's user too (the least rights: RPC calls only), so a
    # tool started from this environment connects as nothing more.
    env["TUOYU_AMQP_URI"] = uris["gateway"]
    return env, uris[SUBSCRIBER]


def servers() -> tuple[LocalPostgres, LocalRabbitMQ]:
    return LocalPostgres(RUN_DIR, PG_PORT), LocalRabbitMQ(RUN_DIR, AMQP_PORT, "tuoyu-run")


def load_demo(gateway: str, token: str) -> str | None:
    """Two institutions: one through filing, affordable designation and an enrolment
    report; one registered and awaiting its filing. Re-running finds them there already.
    Returns the filed one's id (None on a re-run)."""
    registration = gateway
    officer = {"Authorization": f"Bearer {token}"}
    code = "91310104MA1FL8XK0"
    id17 = "31010419880315123"
    first = {
        "name": "徐汇区小星星托育园",
        "credit_code": code + credit_code_check_character(code),
        "nature": "for_profit",
        "kind": "childcare_institution",
        "district": "徐汇区",
        "street": "天平路街道",
        "address": "天平路 88 号 1 楼",
        "person_in_charge": {"name": "王晓梅", "phone": "13812345678",
                             "id_number": id17 + resident_id_check_character(id17)},
    }
    status, reply = http_json("POST", f"{registration}/api/institutions", first, officer)
    if status == 409:
        print("demo: data loaded by an earlier run (`make clean` starts afresh)")
        return None
    print(f"demo: register {first['name']}: HTTP {status}")
    base = f"{registration}/api/institutions/{reply['institution_id']}"
    for command, body in (
        ("submit_filing", sample_filing_submission()),
        ("issue_filing_receipt", {"receipt_number": "徐托备 2025-0001"}),
        ("designate_affordable", {"guide_price_fen": 180000, "document": "徐卫健〔2025〕12号"}),
        ("report_enrolment", sample_enrolment(this_month())),
        ("request_hire", {"practitioner": {"name": "赵敏", "id_number": sample_resident_id(7)},
                          "role": "carer", "certificates": ["育婴员 3101-0042"]}),
        # The simulated public-security records have one for 钱某 (PUBLIC_SECURITY_RECORDS):
        # the background check ends barred, and the hire refused.
        ("request_hire", {"practitioner": {"name": "钱某", "id_number": sample_resident_id(8)},
                          "role": "carer", "certificates": ["育婴员 3101-0043"]}),
    ):
        status, reply = http_json("POST", f"{base}/{command}", body, officer)
        print(f"demo: {command}: HTTP {status}")
    second = sample_registration(2, name="天平社区托育点", kind="community_childcare_point")
    status, _ = http_json("POST", f"{registration}/api/institutions", second, officer)
    print(f"demo: register {second['name']}: HTTP {status}")
    return base.rsplit("/", 1)[1]


#: Population, under-three population and communities by street for the dashboard's
#: indicators (made-up figures of the demo's district, not official statistics).
DEMO_REFERENCE = Path(__file__).with_name("demo-reference.csv")


def load_reference_demo(gateway: str, token: str) -> None:
    """This year's reference data (人口基础数据) for the demo's district, from a CSV, unless
    this year's is loaded already."""
    year = datetime.now(ZoneInfo("Asia/Shanghai")).year
    _, loaded = http_json("GET", f"{gateway}/api/dashboard/reference-data?year={year}", None,
                          {"Authorization": f"Bearer {token}"})
    if loaded.get("count"):
        return
    request = urllib.request.Request(
        f"{gateway}/api/dashboard/reference-data?year={year}&source=demo-reference.csv",
        data=DEMO_REFERENCE.read_bytes(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            print(f"demo: reference data {year}: HTTP {resp.status}")
    except urllib.error.HTTPError as e:
        print(f"demo: reference data {year}: HTTP {e.code} {e.read()[:200]!r}")


#: The demo's inspectors: the 徐汇区 officers of the three departments (DEMO_TOKENS).
INSPECTORS = {"health": DEMO_TOKENS[0], "market_regulation": DEMO_TOKENS[2],
              "fire_rescue": DEMO_TOKENS[3]}


def load_subsidy_demo(gateway: str, tokens: dict, institution_id: str) -> None:
    """This year's budgets (the seed's district budget of 600,000 yuan, and an upper-level
    fund), and the filed affordable institution's opening grant drafted and submitted: it waits
    for a health officer's review."""
    def auth(token_of: tuple) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[token_of]}"}

    finance = auth(next(t for t in DEMO_TOKENS if t[0] == "finance_officer"))
    health = auth(DEMO_TOKENS[0])
    year = int(datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y"))
    for fund, fen in (("district", 60_000_000), ("upper_level", 40_000_000)):
        status, _ = http_json("POST", f"{gateway}/api/subsidy/budgets", {
            "year": year, "fund": fund, "allocated_fen": fen,
            "document": f"{year}年托育补助预算"}, finance)
        print(f"demo: {fund} budget: HTTP {status}")
    deadline = time.monotonic() + 30  # registration's events reach the subsidy service
    while time.monotonic() < deadline:
        _, standing = http_json("GET", f"{gateway}/api/institutions/{institution_id}/"
                                       "subsidy-standing", None, health)
        if standing.get("affordable") and standing.get("status") == "filed":
            break
        time.sleep(0.3)
    status, drafted = http_json("POST", f"{gateway}/api/institutions/{institution_id}/"
                                        "subsidy-applications",
                                {"program": "opening-grant", "year": year}, health)
    print(f"demo: opening grant drafted: HTTP {status}")
    if status == 201:
        status, _ = http_json("POST", f"{gateway}/api/institutions/{institution_id}/subsidy-"
                                      f"applications/{drafted['application_id']}/submission",
                              {}, health)
        print(f"demo: opening grant submitted: HTTP {status}")


def load_inspection_demo(gateway: str, tokens: dict, institution_id: str) -> None:
    """Joint supervision: the three departments' inspectors on their rosters, this year's
    joint random-inspection plan of 徐汇区 drawn (its visit of the filed institution
    scheduled), and health's part of the checklist recorded; market regulation and fire
    rescue are left for whoever tries the demo."""
    def auth(department: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[INSPECTORS[department]]}"}

    deadline = time.monotonic() + 30  # registration's events reach inspection's directory
    while time.monotonic() < deadline:
        _, listing = http_json("GET", f"{gateway}/api/inspection/institutions", None,
                               auth("health"))
        if any(r["institution_id"] == institution_id and r["status"] == "filed"
               for r in listing.get("institutions", [])):
            break
        time.sleep(0.3)
    for department, (_, _, subject) in INSPECTORS.items():
        http_json("POST", f"{gateway}/api/inspection/inspectors",
                  {"department": department, "inspector": subject}, auth(department))
    year = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y")
    status, plan = http_json("POST", f"{gateway}/api/inspection/plans", {
        "title": f"徐汇区{year}年托育机构联合双随机抽查", "period": year, "district": "徐汇区",
        "departments": list(INSPECTORS), "target_count": 1, "inspectors_per_department": 1},
        auth("health"))
    print(f"demo: inspection plan: HTTP {status}")
    if status != 201:
        return
    http_json("POST", f"{gateway}/api/inspection/plans/{plan['plan_id']}/seed", {},
              auth("health"))
    status, drawn = http_json("POST", f"{gateway}/api/inspection/plans/{plan['plan_id']}/draw",
                              {}, auth("health"))
    print(f"demo: draw: HTTP {status}")
    if status != 200 or not drawn.get("targets"):
        return
    target = drawn["targets"][0]
    visit = f"{gateway}/api/institutions/{target['institution_id']}/visits/{target['visit_id']}"
    _, detail = http_json("GET", visit, None, auth("health"))
    codes = [i["code"] for i in detail.get("items", []) if i["department"] == "health"]
    results = [{"item": code, "result": "met"} for code in codes]
    if results:
        results[0] = {**results[0], "result": "partly_met", "note": "晨检记录有两日缺签"}
    status, _ = http_json("POST", f"{visit}/results", {"results": results}, auth("health"))
    print(f"demo: health's checklist items: HTTP {status}")


def this_month() -> str:
    """Enrolment is reported from the month of filing on (the demo files today)."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")


def stop() -> None:
    """Ask `make run` to stop (it stops its processes, then the servers); if it is gone or
    does not finish, stop what it left behind here."""
    if PIDS.exists():
        recorded = json.loads(PIDS.read_text())
        supervisor = recorded.get("supervisor")
        if supervisor and _is_make_run(supervisor) and _signal(supervisor, signal.SIGTERM):
            print(f"asked make run (pid {supervisor}) to stop")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _signal(supervisor, 0):
                time.sleep(0.2)
        # Whatever is still recorded (make run gone, or stuck) is stopped here.
        if PIDS.exists():
            recorded = json.loads(PIDS.read_text())
        pids = recorded.get("processes", {}) if "supervisor" in recorded else recorded
        for name, pid in pids.items():
            try:
                os.killpg(pid, signal.SIGTERM)
                print(f"stopping {name}")
            except ProcessLookupError:
                pass
        # The services must be gone before the broker is: a nameko service whose broker
        # vanished while it was stopping can hang.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids.values()):
            time.sleep(0.2)
        for name, pid in pids.items():
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
                print(f"killed {name}")
        PIDS.unlink(missing_ok=True)
    pg, rabbit = servers()
    rabbit.stop()
    pg.stop()
    print("stopped PostgreSQL and RabbitMQ")


def _is_make_run(pid: int) -> bool:
    """Not some other process that got the pid of a `make run` that was killed."""
    try:
        return b"run.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _signal(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


def start() -> None:
    ports = [spec.http_port for spec in SERVICES] + [
        spec.worker_http_port for spec in SERVICES if spec.worker_http_port is not None]
    busy = [port for port in ports if port_open(port)]
    if busy:
        sys.exit(f"ports {busy} are in use: is an earlier `make run` still up? (`make stop`)")
    pg, rabbit = servers()
    print(f"starting private PostgreSQL (port {PG_PORT}) and RabbitMQ (port {AMQP_PORT}) "
          f"in {RUN_DIR}")
    pg.start()
    rabbit.start()
    base = f"postgresql://tuoyu@127.0.0.1:{PG_PORT}"
    for spec in BACKENDS:
        ensure_database(f"{base}/tuoyu_{spec.name}")
    amqp_env, subscriber_uri = broker_env(rabbit)
    env = {"TUOYU_DATABASE_BASE_URL": base, **amqp_env, **auth_env(),
           # each worker appends its service's signed checkpoints here: the auditors' copy
           "TUOYU_AUDIT_CHECKPOINT_DIR": str(RUN_DIR / "checkpoints")}
    ring = KeyRing.from_env(env)
    tokens = {(role, district, subject): ring.issue(subject, role, district,
                                                    ttl_seconds=7 * 24 * 3600)
              for role, district, subject in DEMO_TOKENS}
    # A process that dies is restarted (with backoff, a line here); pids.json follows it.
    group = ProcessGroup(env, RUN_DIR / "logs", pids_file=PIDS,
                         public_security_records=PUBLIC_SECURITY_RECORDS)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        group.start()
        group.supervise_in_background()
        gateway = group.url("gateway")
        officer = tokens[DEMO_TOKENS[0]]
        filed = load_demo(gateway, officer)
        if filed is not None:
            load_inspection_demo(gateway, tokens, filed)
            load_subsidy_demo(gateway, tokens, filed)
        load_reference_demo(gateway, tokens[DEMO_TOKENS[1]])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, listing = http_json("GET", f"{gateway}/api/dashboard/institutions", None,
                                   {"Authorization": f"Bearer {officer}"})
            if listing.get("count"):
                break
            time.sleep(0.3)
        token_lines = "\n".join(f"  {role:16} {district:6} {subject}\n    {token}"
                                 for (role, district, subject), token in tokens.items())
        print(f"""
Tuoyu is running. Everything goes through the gateway, with a token:
  API documentation:      {gateway}/docs   (OpenAPI 3.1: {gateway}/openapi.json)
  Public disclosure:      {gateway}/api/public/institutions   (no token needed)
  Registration API:       {gateway}/api/institutions/<id>[/record]
                          POST {gateway}/api/institutions, …/<id>/<command>
  Officer views:          {gateway}/api/officer/filings-awaiting  …/staff-cases
  Credit report:          {gateway}/api/institutions/<id>/credit
  Dashboard (指标看板):    {gateway}/dashboard/#token={tokens[DEMO_TOKENS[6]]}
                          (the 徐汇区 leader's token; API: {gateway}/api/dashboard/indicators)
  Joint supervision:      {gateway}/api/inspection/plans  …/visits  …/rectifications
                          {gateway}/api/institutions/<id>/visits/<visit id>
  Inspection results:     {gateway}/api/public/inspection-results   (公示, no token needed)
  Subsidies:              {gateway}/api/subsidy/applications  …/budgets  …/programs  …/batches
  Events (subscribers):   {gateway}/api/events/registration
  Event catalogue:        {gateway}/catalogue/   (AsyncAPI 3.0: …/catalogue/<service>/asyncapi.json)
  Audit (auditor token):  {gateway}/api/audit/registration/cases/<id>/history  …/state?at=
                          …/export?since=2026-01-01  …/verify  …/checkpoints/latest  …/keys
                          checkpoints kept in {RUN_DIR / 'checkpoints'}; verify on your side:
                          python tools/tuoyu_verify.py live --gateway {gateway} \\
                            --service registration --token <auditor token> --keys keys.json \\
                            --checkpoints {RUN_DIR / 'checkpoints'}/registration.checkpoints.jsonl
  Health:                 {"  ".join(group.url(s.name) + "/health" for s in SERVICES)}
  Workers' health:        {"  ".join(group.worker_url(s.name) + "/health" for s in BACKENDS)}
  Public-security inquiry (simulated, records in {PUBLIC_SECURITY_RECORDS.name}):
                          {group.env.get("TUOYU_PUBLIC_SECURITY_URL")}
  Metrics (Prometheus):   /metrics on each of the ports above
  Logs:                   {RUN_DIR / 'logs'}
  PostgreSQL:             {base}/tuoyu_<service>
  RabbitMQ (subscribers): {subscriber_uri}
                          read-only: bind queues "subscriber.<name>" to "<service>.events"
                          (each service has a user of its own; passwords in {BROKER_USERS})
Demo tokens (valid 7 days; send as "Authorization: Bearer <token>"):
{token_lines}
  e.g. curl -H "Authorization: Bearer <token>" {gateway}/api/officer/filings-awaiting
A process that dies is restarted.
Ctrl-C (or `make stop` in another terminal) stops everything.""", flush=True)
        while not stopping:
            time.sleep(0.5)
    finally:
        group.stop()
        PIDS.unlink(missing_ok=True)
        rabbit.stop()
        pg.stop()
        print("stopped")


if __name__ == "__main__":
    {"start": start, "stop": stop}[sys.argv[1] if len(sys.argv) > 1 else "start"]()
