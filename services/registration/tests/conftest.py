"""Fixtures of registration's tests."""

from __future__ import annotations

import pytest

from tuoyu_registration.practitioners import InProcessRegister


@pytest.fixture
def practitioners(settings_factory):
    """Credit's practitioner register, in process on a database of its own: the real
    register that issues practitioners' refs (registration asks it when it hires someone
    it does not know as a practitioner yet)."""
    from tuoyu_credit.application import CreditApplication

    credit = CreditApplication(settings_factory("credit"))
    yield InProcessRegister(credit)
    credit.close()
