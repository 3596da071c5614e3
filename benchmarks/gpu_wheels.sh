#!/usr/bin/env bash
# Here, before a GPU session: the packages the device machine lacks (pydantic and its needs), as
# wheels for its Python 3.12, into .whl/ (ignored by git; carried by the device call). See
# benchmarks/gpu_device_run.sh for the call. Versions: the ones this checkout's venv runs.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
py=${PYTHON:-.venv/bin/python}
want=$("$py" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")))
PY
)
rm -rf .whl && mkdir .whl
# shellcheck disable=SC2086
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $want
ls -l .whl
