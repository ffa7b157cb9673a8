#!/usr/bin/env bash
# One-time set-up on a fresh machine: system packages (RabbitMQ, PostgreSQL if absent), the
# project's virtualenv and its pinned dependencies. Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need_apt=()
command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
# The dashboard page's browser tests drive Debian's chromium (Playwright's own browser download
# is not reachable here); a CJK font lets it draw the page's Chinese.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# promtool (Debian's prometheus package) checks and unit-tests the alert rules in deploy/.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || need_apt+=(fonts-wqy-zenhei)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian's packages"
  $SUDO apt-get update -qq
  # The package's own system node is not wanted: the project runs private ones.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
stamp=.venv/.installed
inputs=(constraints.txt requirements-dev.txt shared/pyproject.toml services/*/pyproject.toml)
if [ -f "$stamp" ]; then
  fresh=1
  for f in "${inputs[@]}"; do [ "$f" -nt "$stamp" ] && fresh=0; done
  [ "$fresh" = 1 ] && exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
editables=(-e "shared[nameko]")
for svc in services/*/; do editables+=(-e "${svc%/}"); done
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
  "${editables[@]}" -r requirements-dev.txt
touch "$stamp"
echo "setup: virtualenv ready in .venv"
