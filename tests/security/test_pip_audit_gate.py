"""`.ci/pip_audit.py` (make lint): red on a known vulnerability, a visible skip when the
vulnerability service does not answer — never red for lack of network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "pip_audit.py"

FAKE = """#!{python}
import json, sys
args = sys.argv[1:]
out = args[args.index("--output") + 1]
mode = {mode!r}
if mode == "offline":
    sys.stderr.write("requests.exceptions.ConnectionError: Max retries exceeded (NameResolutionError)\\n")
    sys.exit(1)
deps = {{
    "vulnerable": [{{"name": "urllib3", "version": "1.0", "vulns": [{{"id": "GHSA-x", "fix_versions": ["2.0"]}}]}}],
    "unanswered": [{{"name": "urllib3", "skip_reason": "Dependency not found on PyPI"}}],
    "clean": [{{"name": "urllib3", "version": "2.8", "vulns": []}}, {{"name": "x", "skip_reason": "nope"}}],
}}[mode]
json.dump({{"dependencies": deps, "fixes": []}}, open(out, "w"))
sys.exit(1 if mode == "vulnerable" else 0)
"""


@pytest.mark.parametrize(
    ("mode", "code", "says"),
    [
        ("vulnerable", 1, "urllib3 1.0: GHSA-x (fixed in 2.0)"),
        ("unanswered", 0, "pip-audit SKIPPED: the vulnerability service answered for none of 1 packages"),
        ("offline", 0, "pip-audit SKIPPED: the vulnerability service is unreachable"),
        ("clean", 0, "pip-audit: 1 packages audited, no known vulnerabilities (1 not audited"),
    ],
)
def test_gate(tmp_path: Path, mode: str, code: int, says: str) -> None:
    fake = tmp_path / "pip-audit"
    fake.write_text(FAKE.format(python=sys.executable, mode=mode))
    fake.chmod(0o755)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), sys.executable, str(fake)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert says in proc.stdout, proc.stdout + proc.stderr
