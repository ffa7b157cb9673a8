"""Fixtures for the cross-service tests: a registration application, its relay and a
dashboard projector wired to a real PostgreSQL and RabbitMQ, each test on its own databases
and exchange."""

from __future__ import annotations

import pytest

from tuoyu_dashboard.projections import project_registration
from tuoyu_registration.application import RegistrationApplication
from tuoyu_shared.consumer import ApplicationLog, SqlTrackingStore, TrackedConsumer
from tuoyu_shared.relay import Relay


@pytest.fixture
def registration(settings_factory):
    app = RegistrationApplication(settings_factory("registration"))
    yield app
    app.close()


@pytest.fixture
def dashboard_db(settings_factory):
    return settings_factory("dashboard")  # migrated: the directory is there


@pytest.fixture
def relay(registration, servers, unique):
    r = Relay(registration, servers.amqp_uri, exchange=f"registration-{unique}.events")
    yield r
    r.close()


@pytest.fixture
def make_projector(registration, dashboard_db, servers, unique):
    """A dashboard projector of the test's registration events; handler may be replaced."""

    def make(handler=project_registration, name: str = "dashboard", **kw) -> TrackedConsumer:
        return TrackedConsumer(
            name=f"{name}-{unique}", upstream="registration", handler=handler,
            store=SqlTrackingStore(dashboard_db.database_url, name),
            log_reader=ApplicationLog(registration), amqp_uri=servers.amqp_uri,
            exchange=f"registration-{unique}.events", retry_delay=0.01,
            catchup_interval=kw.pop("catchup_interval", 0.3), **kw)

    return make
