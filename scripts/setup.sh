#!/usr/bin/env bash
# Set up everything `make demo` / `make test` need on a fresh Debian/Ubuntu machine with Python 3.11:
# the Debian packages (headless OpenGL for pyrender), a venv and the pinned Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium + chromium-driver: the headless browser of the `uvd view` tests (tests/test_view_browser.py).
DEB_PACKAGES="libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libgl1 libglib2.0-0 chromium chromium-driver"
missing=""
for p in $DEB_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip wheel setuptools
.venv/bin/pip install -q -e ".[test]"
# pyrender 0.1.45 pins PyOpenGL 3.1.0, whose OSMesa binding fails; 3.1.7 works.
.venv/bin/pip install -q "PyOpenGL==3.1.7" 2>&1 | grep -v "pyrender 0.1.45 requires PyOpenGL==3.1.0" || true
# MMPose's pose definitions (coco_openpose keypoints, links, colours) are checked against our copy.
# `pip install mmpose` fails (chumpy); the wheel alone, without its dependencies, carries the configs.
.venv/bin/pip install -q --no-deps "mmpose==1.3.2"
touch .venv/.installed
echo "setup: ready (.venv)"
