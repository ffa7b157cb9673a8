"""Registration's composition root: configuration is read there, and the application it builds
holds the rules configured."""

from __future__ import annotations

import json

import pytest

from tuoyu_registration import bootstrap
from tuoyu_registration.domain import CareStandards


def test_without_a_standards_file_the_sourced_defaults_apply():
    assert bootstrap.standards_from_env({}) == CareStandards()


def test_a_standards_file_replaces_the_rules_it_names(tmp_path):
    path = tmp_path / "standards.json"
    path.write_text(json.dumps({"children_per_carer": {"infant": 3, "toddler": 5, "older": 7,
                                                       "mixed": 6},
                                "indoor_m2_per_place": {"institution": 3}}))
    standards = bootstrap.standards_from_env({bootstrap.STANDARDS_VAR: str(path)})
    assert standards.ratio_for("mixed") == 6  # 深圳's, say
    assert dict(standards.indoor_m2_per_place) == {"institution": 3}
    assert standards.max_for("infant") == 10  # the rest as the defaults


def test_the_root_builds_the_application_with_what_it_is_given(settings_factory, monkeypatch,
                                                               tmp_path):
    path = tmp_path / "standards.json"
    path.write_text(json.dumps({"family_point_max_children": 4}))
    monkeypatch.setenv(bootstrap.STANDARDS_VAR, str(path))
    app = bootstrap.application(settings_factory("registration"))
    try:
        assert app.standards.family_point_max_children == 4
        assert app.log_head() == 0
    finally:
        app.close()


def test_a_bad_standards_file_stops_the_start(tmp_path):
    path = tmp_path / "standards.json"
    path.write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        bootstrap.standards_from_env({bootstrap.STANDARDS_VAR: str(path)})
