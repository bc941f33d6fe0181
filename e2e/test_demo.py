"""The README's first command must keep working: run `scripts/demo.sh --exit` (issuer, oidc-authz,
Envoy, upstream, seven example requests) and require every example to answer as documented."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_demo_runs_and_every_example_answers_as_documented() -> None:
    env = dict(os.environ)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), "--exit"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "all 7 examples answered as expected (200 401 403 200 403 200 401)" in out, out
    # what the upstream saw: the verified identity, never the spoofed one
    assert "upstream saw x-auth-subject: alice" in out
    assert "upstream saw x-auth-subject: admin" not in out
    assert "upstream saw x-authz-client: reports" in out
    assert '"code":"missing_required_roles"' in out
