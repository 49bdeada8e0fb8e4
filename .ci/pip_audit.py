"""`make lint`'s dependency audit: pip-audit over every package pinned in the project's virtualenv.

Fails on a known vulnerability. When the vulnerability service does not answer — no network, a
PyPI mirror without the JSON API (pip-audit then reports every package "not found on PyPI"), a
timeout — it prints a visible SKIPPED line and exits 0: CI is never red for lack of network.

Usage: python .ci/pip_audit.py VENV_PYTHON PIP_AUDIT
"""

from __future__ import annotations

import json
import subprocess  # nosec B404 # runs pip and pip-audit with fixed arguments
import sys
import tempfile
from pathlib import Path

NETWORK_MARKERS = ("ConnectionError", "NameResolutionError", "Max retries", "timed out", "Timeout")


def skipped(reason: str) -> int:
    print(f"pip-audit SKIPPED: {reason}", flush=True)
    return 0


def main(venv_python: str, pip_audit: str) -> int:
    freeze = subprocess.run(  # nosec B603
        [venv_python, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    pins = [line for line in freeze.splitlines() if "==" in line and not line.startswith("-")]
    with tempfile.TemporaryDirectory() as tmp:
        reqs, report = Path(tmp, "requirements.txt"), Path(tmp, "report.json")
        reqs.write_text("\n".join(pins) + "\n")
        cmd = [pip_audit, "-r", str(reqs), "--no-deps", "--disable-pip", "--progress-spinner", "off"]
        cmd += ["--timeout", "20", "--format", "json", "--output", str(report)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # nosec B603
        except subprocess.TimeoutExpired:
            return skipped("the vulnerability service did not answer within 600 s")
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            if any(m in proc.stderr for m in NETWORK_MARKERS):
                return skipped(
                    "the vulnerability service is unreachable: " + proc.stderr.strip().splitlines()[-1]
                )
            print(proc.stdout + proc.stderr, file=sys.stderr)
            return proc.returncode or 1
    deps = data.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    found = [(d, v) for d in audited for v in d.get("vulns", [])]
    for dep, vuln in found:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
        print(f"pip-audit: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    if found:
        return 1
    if not audited:
        return skipped(f"the vulnerability service answered for none of {len(deps)} packages")
    rest = len(deps) - len(audited)
    note = f" ({rest} not audited: no answer for them)" if rest else ""
    print(f"pip-audit: {len(audited)} packages audited, no known vulnerabilities{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
