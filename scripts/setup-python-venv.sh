#!/usr/bin/env bash
# Create the Python virtual environment used by the Python face's equivalence test
# (crates/hz-gym-compile/tests/python_equivalence.rs) and install exactly the pinned
# packages from PyPI. Keep the pins in step with PYTHON_REQUIREMENTS in
# crates/hz-gym-compile/src/python.rs.
#
#   scripts/setup-python-venv.sh [VENV_DIR]     (default: $HOME/.cache/440hz/py-venv)
#   HZ_PYTHON=VENV_DIR/bin/python cargo test -p hz-gym-compile --test python_equivalence
set -euo pipefail

VENV="${1:-$HOME/.cache/440hz/py-venv}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"Python 3.11 or newer is needed (sqlite3 serialize/deserialize); this is {sys.version.split()[0]}")
PY

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

# Direct dependencies (as in the generated pyproject.toml) and every transitive one, pinned.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    gymnasium==1.4.0 \
    jinja2==3.1.6 \
    jsonschema==4.26.0 \
    cel-python==0.5.0 \
    jsonpath-rfc9535==1.0.1 \
    google-re2==1.1.20251105 \
    attrs==26.1.0 \
    cloudpickle==3.1.3 \
    Farama-Notifications==0.0.6 \
    iregexp-check==0.1.4 \
    jmespath==1.1.0 \
    jsonschema-specifications==2025.9.1 \
    lark==1.3.1 \
    MarkupSafe==3.0.4 \
    numpy==2.4.6 \
    pendulum==3.3.0 \
    python-dateutil==4.0.0 \
    PyYAML==6.0.4 \
    referencing==0.37.0 \
    regex==2026.11.19 \
    rpds-py==2026.9.1 \
    safetensors==0.8.0 \
    typing_extensions==4.16.0 \
    tzdata==2026.6

echo "Python venv ready: $VENV"
echo "Run: HZ_PYTHON=$VENV/bin/python cargo test -p hz-gym-compile --test python_equivalence"
