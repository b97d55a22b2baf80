"""HMI tests: Qt offscreen (set before anything imports Qt), model tests without Qt, live tests against a
real simulator + server started in a background thread (see tests/hmi/stack.py)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
