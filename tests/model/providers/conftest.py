"""Make the fake wire-format servers in fakes/ importable from provider tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
