"""Issue 16: nothing lost, nothing doubled, under every failure we can cause.

A mixed workload runs through the gateway (registrations, filings, monthly reports, hires,
visits and findings, claims and approvals, payment results) while each fault is caused, one at
a time and then several at once. After each, once the system has converged: every command the
driver saw accepted has its events in the store (0 lost), no upstream event was applied twice
and no command made two aggregates (0 duplicated), every aggregate's versions follow one
another, every read model of every service equals its rebuild from the log, the dead letters
hold exactly the poison injected, and every service's audit verification passes. The table
goes to ``bench-results/reliability/bounded.{json,md}``.
"""

from __future__ import annotations

import pytest

from tuoyu_shared.reliability.scenarios import SCENARIOS


@pytest.mark.broker_control
@pytest.mark.parametrize("name, fault_text, fault", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_nothing_is_lost_doubled_or_different_after(suite, name, fault_text, fault):
    result = suite.run(name, fault_text, fault)
    assert result.accepted > 0, f"the load was refused throughout: {result.notes}"
    assert result.clean, "\n".join(result.problems)
    assert result.lost == result.duplicated == result.mismatches == 0
    assert not suite.workload.bugs, suite.workload.bugs[-1]


def test_the_checks_see_a_changed_read_model_and_a_stray_dead_letter(suite):
    """Last, on the same system: one read-model row changed by hand and one dead letter that
    no poison explains are both found (the zeros above are counted, not assumed)."""
    import psycopg

    from tuoyu_shared.reliability import checks

    url = suite.system.direct["dashboard"]
    with psycopg.connect(url, autocommit=True) as conn:
        institution, name = conn.execute(
            "SELECT institution_id, name FROM institution_directory ORDER BY institution_id "
            "LIMIT 1").fetchone()
        conn.execute("UPDATE institution_directory SET name = name || '（改）' "
                     "WHERE institution_id = %s", (institution,))
        conn.execute("INSERT INTO consumer_dead_letters (consumer, upstream, notification_id, "
                     "event_type, envelope, error, attempts) VALUES ('dashboard', "
                     "'registration', 999999, 'InstitutionRegistered', '{}', 'stray', 1)")
    try:
        mismatches, _ = checks.read_model_mismatches(suite.system, suite.rebuild_urls)
        assert any(m.startswith("dashboard.institution_directory") for m in mismatches)
        problems, _, _ = checks.unexpected_letters(suite.system, suite.expected)
        assert problems == ["dashboard/dashboard parked registration#999999"]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE institution_directory SET name = %s WHERE institution_id = %s",
                         (name, institution))
            conn.execute("DELETE FROM consumer_dead_letters WHERE notification_id = 999999")
    assert checks.read_model_mismatches(suite.system, suite.rebuild_urls)[0] == []


#: What the mix must have had accepted over the run (the load is what the table says it is).
MIX = ("register_institution", "submit_filing", "issue_filing_receipt", "report_enrolment",
       "request_hire", "schedule_targeted_visit", "record_item_results", "sign_off",
       "draft_application", "submit_application", "review_application", "create_batch",
       "export_batch", "import_results")


def test_the_load_covered_the_mix(suite):
    counts = suite.recorder.counts()
    missing = [name for name in MIX if counts.get(name, {}).get("accepted", 0) == 0]
    assert not missing, f"never accepted: {missing}; counts: {counts}"
