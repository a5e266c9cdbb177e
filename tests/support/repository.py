"""Where the tests find the repository's own files."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The contract as the service ships and serves it (package data); ./openapi.yaml links to it.
CONTRACT_PATH = Path(str(importlib.resources.files("service").joinpath("openapi.yaml")))
DEMO_TEMPLATE = REPO_ROOT / "emulator" / "data" / "demo.json"
TEST_DATA = REPO_ROOT / "tests" / "data"
