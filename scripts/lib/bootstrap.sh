# Shared set-up for scripts/dev and scripts/test: a project virtualenv with authsvc installed.
# Every dependency comes from a lock file with hashes (requirements/*.lock, made by scripts/lock);
# re-installs only when pyproject.toml or that lock changes. Works on a fresh Debian machine with
# Python 3.11.

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

NODE_MAJOR_MIN=20  # openid-client 6's baseline (tests/oidc_rp)

ensure_node_packages() {
  # ensure_node_packages DIR: `npm ci` in DIR (relative to the repo) when its node_modules is missing
  # or older than its package-lock.json (a stamp holds the lock's hash); needs node >= NODE_MAJOR_MIN.
  local dir="$ROOT/$1"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "authsvc: node and npm are missing: install Node.js $NODE_MAJOR_MIN or newer (https://nodejs.org/en/download," \
         "or NodeSource's Debian packages; Debian 12's own nodejs is 18, too old)" >&2
    return 1
  fi
  local major; major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt "$NODE_MAJOR_MIN" ]; then
    echo "authsvc: node $(node --version) is too old: $1 needs Node.js $NODE_MAJOR_MIN or newer" >&2
    return 1
  fi
  local stamp="$dir/node_modules/.authsvc-installed"
  local want; want=$(sha256sum "$dir/package-lock.json" | cut -c1-16)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "authsvc: installing npm packages into ${1}/node_modules from its package-lock.json ..." >&2
    # --ignore-scripts: no install script of any package runs; integrity hashes come from the lock.
    (cd "$dir" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error) || {
      echo "authsvc: npm ci in $1 failed (offline with an empty npm cache? an integrity mismatch?)" >&2
      return 1
    }
    echo "$want" > "$stamp"
  fi
}

lock_file() {
  # lock_file [EXTRA]: the lock that ensure_venv installs: runtime.lock, or the extra's own lock.
  echo "$ROOT/requirements/${1:-runtime}.lock"
}

pip_install() {
  # pip_install ARGS...: quiet pip install into .venv, without the noise of unused local indexes;
  # keeps pip's exit status.
  local out rc=0
  out=$("$VENV/bin/python" -m pip install -q "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -vE "^WARNING: Location|^\s*$" >&2 || true
  return $rc
}

ensure_venv() {
  # ensure_venv [EXTRA]: .venv with the locked dependencies (and the extra's), authsvc itself and
  # the Flask extension in clients/flask (both editable, --no-deps: a hash cannot cover a working
  # tree; the extension's own dependencies, Flask and Flask-Login, are authsvc's and locked).
  local extra=${1:-}
  local lock; lock=$(lock_file "$extra")
  [ -f "$lock" ] || { echo "authsvc: no lock file $lock (make it with scripts/lock)" >&2; return 1; }
  local py; py=$(find_python) || return 1
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv && "$py" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.authsvc-installed${extra:+-$extra}"
  local want; want=$(cat "$ROOT/pyproject.toml" "$ROOT/clients/flask/pyproject.toml" "$lock" | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "authsvc: installing Python packages into .venv from ${lock#"$ROOT"/} ..." >&2
    # No bare "pip install --upgrade pip": an unpinned, unhashed pip from whichever index answered
    # would run on every later start of the venv. The test lock pins pip; the runtime one keeps the
    # pip the venv came with. --require-hashes: a file whose hash is not in the lock is refused,
    # whichever index served it. The lock also holds setuptools and wheel (requirements/build.in),
    # which build the two packages below with --no-build-isolation: else pip fetches them unchecked.
    # --no-deps: the lock is the whole closure, so pip installs exactly its pins and resolves
    # nothing (the venv's own older pip misreads a dependency's extras in hash mode); pip check below
    # proves the set complete.
    pip_install --require-hashes --no-deps -r "$lock" || {
      echo "authsvc: installing ${lock#"$ROOT"/} failed (a hash mismatch means a file is not the one locked)" >&2
      return 1
    }
    pip_install --no-deps --no-build-isolation -e "$ROOT" || { echo "authsvc: installing authsvc itself failed" >&2; return 1; }
    # examples/microblog and clients/flask/tests use it; scripts/test runs those tests.
    pip_install --no-deps --no-build-isolation -e "$ROOT/clients/flask" || {
      echo "authsvc: installing clients/flask failed" >&2; return 1; }
    "$VENV/bin/python" -c "import authsvc, flask_authsvc" || { echo "authsvc: package install failed" >&2; return 1; }
    # A dependency added to pyproject.toml but not yet locked shows up here.
    if ! "$VENV/bin/python" -m pip check >/dev/null 2>&1; then
      "$VENV/bin/python" -m pip check >&2 || true
      echo "authsvc: .venv does not satisfy pyproject.toml: the lock files are stale; run scripts/lock" >&2
      return 1
    fi
    echo "$want" > "$stamp"
  fi
}
