"""``make audit``: pip-audit with a verdict that says how many packages were checked; none checked (pip-audit's exit 0)
or pip-audit failing is "not audited", exit code 1, as are known vulnerabilities."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def summarize(report: dict[str, Any]) -> tuple[int, list[str]]:
    """Exit code and report lines for pip-audit's JSON output."""
    deps = report.get("dependencies", [])
    checked = [d for d in deps if "skip_reason" not in d]
    skipped = [d for d in deps if "skip_reason" in d]
    if not checked:
        why = f": {skipped[0]['skip_reason']}" if skipped else ""
        return 1, [f"not audited: 0 of {len(deps)} packages could be checked{why}"]
    lines = []
    for dep in checked:
        for vuln in dep.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix released"
            lines.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixed})")
    vulnerable = sum(bool(d.get("vulns")) for d in checked)
    verdict = f"{len(lines)} known vulnerabilities in {vulnerable} packages" if lines else "no known vulnerabilities"
    lines.append(f"audited {len(checked)} of {len(deps)} packages: {verdict}")
    if skipped:
        lines.append(f"not audited ({len(skipped)}): {', '.join(sorted(d['name'] for d in skipped))}")
    return (1 if vulnerable else 0), lines


def main() -> int:
    """pip-audit (with this command's arguments) of this interpreter: print the summary, return the exit code."""
    cmd = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", *sys.argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        code, lines = summarize(json.loads(proc.stdout))
    except json.JSONDecodeError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        code, lines = 1, [f"not audited: pip-audit failed (exit {proc.returncode}; no network?): {last[:300]}"]
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
