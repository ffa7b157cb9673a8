"""Credit's composition root reads the configuration: the rules file and the re-check period;
a bad one stops the start before anything connects."""

from __future__ import annotations

import json

import pytest

from tuoyu_credit import bootstrap
from tuoyu_credit.rules_config import ENV_VAR, RECHECK_DAYS_VAR, RulesFileInvalid


def test_the_root_builds_the_application_with_the_configured_rules(settings_factory,
                                                                    monkeypatch, tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"scoring": {"initial_score": 90}}), encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(path))
    monkeypatch.setenv(RECHECK_DAYS_VAR, "30")
    app = bootstrap.application(settings_factory("credit"))
    try:
        assert app.rules.scoring.initial_score == 90
        assert app.recheck_days == 30
    finally:
        app.close()


@pytest.mark.parametrize(("var", "value"), [(ENV_VAR, "/nonexistent/rules.json"),
                                            (RECHECK_DAYS_VAR, "a year")])
def test_a_bad_configuration_stops_the_start(settings_factory, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(RulesFileInvalid):
        bootstrap.application(settings_factory("credit"))
