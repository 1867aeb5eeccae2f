#!/usr/bin/env bash
# The microblog behind nginx (deploy/nginx/authsvc.conf as shipped) and authsvc, on this machine:
# see examples/microblog/README.md. Arguments go to serve.py (--oidc: the OIDC mode; --check: sign in once and stop;
# --port N: nginx's https port, default 8443). Needs nginx and openssl (apt-get install nginx openssl).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/bootstrap.sh
ensure_venv test   # authsvc, gunicorn, flask_authsvc (clients/flask) and the test helpers the stack uses
exec .venv/bin/python examples/microblog/serve.py "$@"
