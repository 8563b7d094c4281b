# Create or reuse the project's virtual environment (.venv) and install derf_zoo with its dev extras.
# Sourced by the README's commands. Idempotent: when pyproject.toml has not changed since the last
# install it only activates the environment (well under a second).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DERF_ZOO_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[derf_zoo] creating $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.derf_zoo-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[derf_zoo] installing derf_zoo and its dependencies into $venv (first time: a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[dev]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
