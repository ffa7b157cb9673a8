"""``python -m tuoyu_subsidy migrate``: bring the service's database schema up to date (see
:mod:`tuoyu_shared.migrate`)."""

import sys

from tuoyu_shared.migrate import service_main

sys.exit(service_main("subsidy"))
