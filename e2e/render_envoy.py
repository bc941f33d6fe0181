#!/usr/bin/env python3
"""Render a ${...}-templated file (deploy/envoy/envoy.yaml) by plain string replacement.

    python3 e2e/render_envoy.py deploy/envoy/envoy.yaml ENVOY_PORT=8080 ENVOY_ADMIN_PORT=9901 ... > out.yaml

Every ${NAME} placeholder in the template must be given a value (error otherwise); values are inserted verbatim.
Imported by e2e/test_e2e.py (render()) and used by scripts/validate-envoy.sh.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def render(template: str, values: Mapping[str, object]) -> str:
    missing = placeholders(template) - set(values)
    if missing:
        raise KeyError(f"no value for placeholder(s): {', '.join(sorted(missing))}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        template = f.read()
    values = {}
    for arg in argv[2:]:
        name, sep, value = arg.partition("=")
        if not sep:
            print(f"expected NAME=VALUE, got {arg!r}", file=sys.stderr)
            return 2
        values[name] = value
    try:
        sys.stdout.write(render(template, values))
    except KeyError as e:
        print(f"{argv[1]}: {e.args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
