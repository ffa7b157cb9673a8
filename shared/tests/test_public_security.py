"""The practitioner background check's adapter (tuoyu_shared.public_security) against the
simulator of the public-security records inquiry (tuoyu_shared.simulators.public_security).

What matters most: no failure of the external system ever reads as "no record" (each one
raises), the inquiry is idempotent by request id, and neither the ID number nor the name
reaches a log line. No database is needed.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from tuoyu_shared.config import ConfigurationError
from tuoyu_shared.public_security import (
    DEFAULT_SIMULATOR_URL,
    HttpPublicSecurityInquiry,
    InquiryAnswer,
    InquiryRejected,
    InquiryRequest,
    InquiryUnauthorized,
    InquiryUnavailable,
    InquiryUnknown,
    PublicSecurityInquiry,
    _answer_from,
    _scrubbed,
    inquiry_from_env,
)
from tuoyu_shared.simulators.public_security import load_records, start_simulator
from tuoyu_shared.validation import resident_id_check_character


def resident_id(first17: str) -> str:
    return first17 + resident_id_check_character(first17)


CLEAR_ID = "11010519491231002X"  # the example of GB 11643-1999: no record in the simulator
RECORD_ID = resident_id("31010419850612003")
INVALID_ID = CLEAR_ID[:17] + "1"  # the check character should be X
NAME = "王小明"


def request(request_id: str = "hire-0001", id_number: str = CLEAR_ID, name: str = NAME,
            purpose: str = "hire") -> InquiryRequest:
    return InquiryRequest(request_id=request_id, id_number=id_number, name=name,
                          purpose=purpose, requested_by="institution:demo-01")  # type: ignore[arg-type]


@pytest.fixture
def sim():
    with start_simulator(records={RECORD_ID: ["violence", "abuse"]}) as simulator:
        yield simulator


@pytest.fixture
def inquiry(sim) -> HttpPublicSecurityInquiry:
    return HttpPublicSecurityInquiry(sim.url, timeout=2.0)


# ---------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------


def test_a_person_without_a_record_is_answered_no_record_with_the_reference(inquiry):
    answer = inquiry.inquire(request())
    assert isinstance(answer, InquiryAnswer)
    assert answer.request_id == "hire-0001"
    assert answer.result == "no_record" and not answer.record_found
    assert answer.categories == ()
    assert re.fullmatch(r"GA-\d{4}-\d{6}", answer.reference)
    assert answer.answered_at.tzinfo == UTC
    assert abs((datetime.now(UTC) - answer.answered_at).total_seconds()) < 60


def test_a_record_is_answered_with_its_categories(inquiry):
    answer = inquiry.inquire(request(id_number=RECORD_ID, purpose="yearly"))
    assert answer is not None
    assert answer.result == "record_found" and answer.record_found
    assert answer.categories == ("abuse", "violence")  # in the order of CATEGORIES


def test_each_inquiry_has_its_own_reference(inquiry):
    first = inquiry.inquire(request("hire-0001"))
    second = inquiry.inquire(request("hire-0002"))
    assert first is not None and second is not None
    assert first.reference != second.reference


def test_the_same_request_id_answers_the_same_reference_and_result(sim, inquiry):
    first = inquiry.inquire(request(id_number=RECORD_ID))
    again = inquiry.inquire(request(id_number=RECORD_ID))
    status = inquiry.status("hire-0001")
    assert first == again == status
    assert sim.inquiry_count == 1


def test_a_request_id_reused_for_another_person_is_rejected(sim, inquiry):
    inquiry.inquire(request())
    with pytest.raises(InquiryRejected) as caught:
        inquiry.inquire(request(id_number=RECORD_ID))
    assert caught.value.details == {"external_status": 409, "field": "request_id",
                                    "external_code": "request_id_reused"}
    assert sim.inquiry_count == 1


def test_the_adapter_is_the_port():
    assert isinstance(HttpPublicSecurityInquiry("http://127.0.0.1:1"), PublicSecurityInquiry)


# ---------------------------------------------------------------------------
# Refused requests
# ---------------------------------------------------------------------------


def test_an_invalid_id_number_is_rejected_with_the_field_and_its_code(inquiry):
    with pytest.raises(InquiryRejected) as caught:
        inquiry.inquire(request(id_number=INVALID_ID))
    error = caught.value
    assert not isinstance(error, InquiryUnavailable)
    assert error.http_status == 400 and error.code == "inquiry_rejected"
    assert error.details == {"external_status": 400, "field": "id_number",
                             "external_code": "invalid_check_character"}
    assert "check character" in error.message
    assert INVALID_ID not in error.message


@pytest.mark.parametrize("changes, field", [
    ({"name": "王" * 51}, "name"),
    ({"name": "王\x07明"}, "name"),
    ({"requested_by": "x" * 201}, "requested_by"),
    ({"id_number": CLEAR_ID[:15]}, "id_number"),
    ({"id_number": "11010520991231002X"}, "id_number"),  # born in the future
])
def test_other_invalid_requests_are_rejected(inquiry, changes, field):
    body = {"request_id": "hire-0001", "id_number": CLEAR_ID, "name": NAME,
            "purpose": "hire", "requested_by": "institution:demo-01", **changes}
    with pytest.raises(InquiryRejected) as caught:
        inquiry.inquire(InquiryRequest(**body))
    assert caught.value.details["field"] == field


def test_a_status_for_an_unknown_request_id_says_to_send_it_again(inquiry):
    with pytest.raises(InquiryUnknown) as caught:
        inquiry.status("hire-never-sent")
    assert caught.value.http_status == 404
    assert "send it again" in caught.value.message


def test_a_refusal_that_quotes_the_person_is_masked():
    reason = f"{CLEAR_ID} ({NAME}) does not match the population register"
    scrubbed = _scrubbed(reason, request())
    assert CLEAR_ID not in scrubbed and NAME not in scrubbed
    assert scrubbed.startswith("110105********002X")


def test_the_request_keeps_the_person_out_of_its_repr():
    shown = repr(request())
    assert CLEAR_ID not in shown and NAME not in shown and "hire-0001" in shown


@pytest.mark.parametrize("changes", [
    {"request_id": ""}, {"request_id": "a/b"}, {"request_id": "x" * 101},
    {"purpose": "curiosity"}, {"id_number": " "}, {"name": ""},
])
def test_a_malformed_request_is_a_programming_error(changes):
    body = {"request_id": "hire-0001", "id_number": CLEAR_ID, "name": NAME,
            "purpose": "hire", "requested_by": "institution:demo-01", **changes}
    with pytest.raises(ValueError):
        InquiryRequest(**body)


# ---------------------------------------------------------------------------
# No answer is never "no record"
# ---------------------------------------------------------------------------


def test_a_stopped_system_is_unavailable():
    simulator = start_simulator()
    inquiry = HttpPublicSecurityInquiry(simulator.url, timeout=2.0)
    simulator.stop()
    with pytest.raises(InquiryUnavailable) as caught:
        inquiry.inquire(request())
    assert "refused the connection" in caught.value.message
    assert caught.value.http_status == 503


def test_a_system_down_is_unavailable_and_answers_again_once_up(sim, inquiry):
    sim.set_down(True)
    with pytest.raises(InquiryUnavailable) as caught:
        inquiry.inquire(request())
    assert "HTTP 503" in caught.value.message
    with pytest.raises(InquiryUnavailable):
        inquiry.status("hire-0001")
    sim.set_down(False)
    assert inquiry.inquire(request()).result == "no_record"


def test_an_answer_slower_than_the_timeout_is_unavailable(sim):
    sim.set_delay(2.0)
    inquiry = HttpPublicSecurityInquiry(sim.url, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(InquiryUnavailable) as caught:
        inquiry.inquire(request())
    assert time.monotonic() - started < 1.5
    assert "did not answer within 0.2 s" in caught.value.message


def test_a_body_that_is_not_json_is_unavailable(sim, inquiry):
    sim.set_malformed(True)
    with pytest.raises(InquiryUnavailable) as caught:
        inquiry.inquire(request())
    assert "not JSON" in caught.value.message


@pytest.mark.parametrize("body, problem", [
    ({"request_id": "hire-other", "status": "answered"}, "not the answer to this request"),
    ({"status": "cleared"}, "status must be"),
    ({"status": "answered", "result": "no_record", "categories": [],
      "answered_at": "2026-03-02T08:00:00+00:00"}, "reference is missing"),
    ({"status": "answered", "reference": "GA-1", "result": "clear", "categories": [],
      "answered_at": "2026-03-02T08:00:00+00:00"}, "result must be"),
    ({"status": "answered", "reference": "GA-1", "result": "record_found", "categories": [],
      "answered_at": "2026-03-02T08:00:00+00:00"}, "no category"),
    ({"status": "answered", "reference": "GA-1", "result": "record_found",
      "categories": ["fraud"], "answered_at": "2026-03-02T08:00:00+00:00"}, "unknown"),
    ({"status": "answered", "reference": "GA-1", "result": "no_record",
      "categories": ["abuse"], "answered_at": "2026-03-02T08:00:00+00:00"}, "yet categories"),
    ({"status": "answered", "reference": "GA-1", "result": "no_record", "categories": [],
      "answered_at": "2026-03-02T08:00:00"}, "with its offset"),
    ({"status": "answered", "reference": "GA-1", "result": "no_record", "categories": [],
      "answered_at": "yesterday"}, "with its offset"),
])
def test_an_answer_off_the_contract_is_unavailable_never_no_record(body, problem):
    with pytest.raises(InquiryUnavailable) as caught:
        _answer_from({"request_id": "hire-0001", **body}, "hire-0001", "answered HTTP 200")
    assert problem in caught.value.message


def test_answered_at_is_read_into_utc():
    answer = _answer_from({"request_id": "r-1", "status": "answered", "reference": "GA-1",
                           "result": "no_record", "answered_at": "2026-03-02T16:00:00+08:00"},
                          "r-1", "answered HTTP 200")
    assert answer is not None and answer.answered_at == datetime(2026, 3, 2, 8, tzinfo=UTC)


# ---------------------------------------------------------------------------
# Deferred answers
# ---------------------------------------------------------------------------


def test_a_deferred_inquiry_is_pending_then_answered_on_status(sim, inquiry):
    sim.set_deferred(True)
    assert inquiry.inquire(request(id_number=RECORD_ID)) is None
    assert inquiry.inquire(request(id_number=RECORD_ID)) is None  # sent again: still pending
    answer = inquiry.status("hire-0001")
    assert answer is not None and answer.categories == ("abuse", "violence")
    assert inquiry.status("hire-0001") == answer == inquiry.inquire(request(id_number=RECORD_ID))


def test_a_deferred_inquiry_can_take_several_status_calls(sim, inquiry):
    sim.set_deferred(True, polls=2)
    assert inquiry.inquire(request()) is None
    assert inquiry.status("hire-0001") is None
    assert inquiry.status("hire-0001").result == "no_record"


# ---------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------


def test_the_credential_is_checked():
    with start_simulator(credentials=("tuoyu", "s3cret-of-tuoyu")) as simulator:
        right = HttpPublicSecurityInquiry(simulator.url, client_id="tuoyu",
                                          client_secret="s3cret-of-tuoyu")
        assert right.inquire(request()).result == "no_record"
        for wrong in (HttpPublicSecurityInquiry(simulator.url),
                      HttpPublicSecurityInquiry(simulator.url, client_id="tuoyu",
                                                client_secret="guess"),
                      HttpPublicSecurityInquiry(simulator.url, client_id="other",
                                                client_secret="s3cret-of-tuoyu")):
            with pytest.raises(InquiryUnauthorized) as caught:
                wrong.status("hire-0001")
            # An outage for the check (pending, never cleared), and the operators' to fix.
            assert isinstance(caught.value, InquiryUnavailable)
            assert "credential was refused" in caught.value.message
        assert "s3cret" not in repr(right)


# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------


def test_no_id_number_or_name_in_the_logs_whatever_happens(sim):
    inquiry = HttpPublicSecurityInquiry(sim.url, timeout=0.3)
    with capture_logs() as logs:
        inquiry.inquire(request("r-1"))
        inquiry.inquire(request("r-2", id_number=RECORD_ID))
        with pytest.raises(InquiryRejected):
            inquiry.inquire(request("r-3", id_number=INVALID_ID))
        sim.set_deferred(True)
        inquiry.inquire(request("r-4"))
        inquiry.status("r-4")
        sim.set_down(True)
        with pytest.raises(InquiryUnavailable):
            inquiry.inquire(request("r-5"))
        sim.set_down(False)
        sim.set_delay(1.0)
        with pytest.raises(InquiryUnavailable):
            inquiry.inquire(request("r-6"))
    adapter = [e for e in logs if e["event"] == "public_security.inquiry"]
    assert [(e["request_id"], e["outcome"]) for e in adapter] == [
        ("r-1", "answered"), ("r-2", "answered"), ("r-3", "rejected"), ("r-4", "pending"),
        ("r-4", "answered"), ("r-5", "unavailable"), ("r-6", "unavailable")]
    assert all(isinstance(e["duration_ms"], float) for e in adapter)
    assert adapter[0]["reference"].startswith("GA-")
    assert adapter[2]["field"] == "id_number"
    assert any(e["event"] == "public_security_simulator.request" for e in logs)
    text = json.dumps(logs, default=str, ensure_ascii=False)
    for secret in (CLEAR_ID, RECORD_ID, INVALID_ID, CLEAR_ID[:14], NAME,
                   "record_found", "violence"):
        assert secret not in text


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def test_production_needs_the_url():
    with pytest.raises(ConfigurationError, match="TUOYU_PUBLIC_SECURITY_URL must be set"):
        inquiry_from_env({"TUOYU_ENVIRONMENT": "production"})


def test_production_needs_https():
    with pytest.raises(ConfigurationError, match="https"):
        inquiry_from_env({"TUOYU_ENVIRONMENT": "production",
                          "TUOYU_PUBLIC_SECURITY_URL": "http://ga.example/api"})


def test_production_with_its_url_and_credential():
    inquiry = inquiry_from_env({
        "TUOYU_ENVIRONMENT": "production", "TUOYU_PUBLIC_SECURITY_URL": "https://ga.example/api/",
        "TUOYU_PUBLIC_SECURITY_CLIENT_ID": "tuoyu", "TUOYU_PUBLIC_SECURITY_CLIENT_SECRET": "x",
        "TUOYU_PUBLIC_SECURITY_TIMEOUT": "8"})
    assert inquiry.base_url == "https://ga.example/api" and inquiry.timeout == 8


def test_development_defaults_to_the_simulator_and_nothing_there_is_unavailable():
    inquiry = inquiry_from_env({})
    assert inquiry.base_url == DEFAULT_SIMULATOR_URL and inquiry.timeout == 5.0
    with start_simulator() as simulator:  # an address where nothing listens
        url = simulator.url
    with pytest.raises(InquiryUnavailable):
        inquiry_from_env({"TUOYU_PUBLIC_SECURITY_URL": url}).inquire(request())


@pytest.mark.parametrize("env, message", [
    ({"TUOYU_PUBLIC_SECURITY_CLIENT_ID": "tuoyu"}, "both or neither"),
    ({"TUOYU_PUBLIC_SECURITY_TIMEOUT": "soon"}, "number of seconds"),
    ({"TUOYU_PUBLIC_SECURITY_TIMEOUT": "0"}, "more than 0"),
    ({"TUOYU_PUBLIC_SECURITY_URL": "ftp://ga.example"}, "http"),
])
def test_a_bad_configuration_is_refused(env, message):
    with pytest.raises(ConfigurationError, match=message):
        inquiry_from_env(env)


# ---------------------------------------------------------------------------
# The simulator itself
# ---------------------------------------------------------------------------


def test_the_records_file_is_checked(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps({"_note": "demo", RECORD_ID: ["trafficking"]}))
    assert load_records(path) == {RECORD_ID: ("trafficking",)}
    with pytest.raises(ValueError, match="not a valid resident ID"):
        load_records({INVALID_ID: ["abuse"]})
    with pytest.raises(ValueError, match="one or more of"):
        load_records({RECORD_ID: ["fraud"]})
    with pytest.raises(ValueError, match="one or more of"):
        load_records({RECORD_ID: []})


def test_the_simulator_runs_as_a_module(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps({RECORD_ID: ["sexual_offence"]}))
    process = subprocess.Popen(
        [sys.executable, "-m", "tuoyu_shared.simulators.public_security", "--port", "0",
         "--records", str(path)],
        stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr],
                     daemon=True).start()
    try:
        url = None
        while url is None:  # the log line "serving" names the address
            line = lines.get(timeout=20)
            if line.startswith("{"):
                url = json.loads(line).get("url")
        answer = HttpPublicSecurityInquiry(url).inquire(request(id_number=RECORD_ID))
        assert answer is not None and answer.categories == ("sexual_offence",)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
