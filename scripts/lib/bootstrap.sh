# Shared set-up for scripts/dev and scripts/test: a project virtualenv with authsvc installed.
# Re-installs only when pyproject.toml changes. Works on a fresh Debian machine with Python 3.11.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$ROOT/.venv"

find_python() {
  for py in python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$py"; return 0
    fi
  done
  echo "authsvc: Python 3.11 or newer is required (apt-get install python3)" >&2
  return 1
}

apt_install() {
  # apt_install PKG...: install Debian packages that are missing (needs root; CI runs as root).
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "authsvc: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  echo "authsvc: installing Debian packages: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  # ensure_venv [EXTRA]: .venv with authsvc installed (editable), plus the optional extra.
  local extra=${1:-}
  local py; py=$(find_python) || return 1
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv && "$py" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.authsvc-installed${extra:+-$extra}"
  local want; want=$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "authsvc: installing Python packages into .venv ..." >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -e "$ROOT${extra:+[$extra]}" 2>&1 | grep -vE "^WARNING: Location|^\s*$" >&2 || true
    "$VENV/bin/python" -c "import authsvc" || { echo "authsvc: package install failed" >&2; return 1; }
    echo "$want" > "$stamp"
  fi
}
