"""Read alerts/thresholds.yml, the one source of the alerting thresholds.

Imported by scripts/check-alert-thresholds.py (the rule files against the file) and
scripts/gen-dashboards (colour steps, the Worst nodes table, descriptions). Python 3 standard
library only: the file's format is kept trivial on purpose (see its header), so a line parser
reads it exactly and refuses anything else, rather than a YAML library reading more than we mean.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS_FILE = ROOT / "alerts" / "thresholds.yml"

LINE_RE = re.compile(r"(?P<key>[a-z][a-z0-9_]*): (?P<value>-?[0-9]+(?:\.[0-9]+)?)")


class ThresholdsError(ValueError):
    pass


def load(path=THRESHOLDS_FILE):
    """{key: value} in file order; an integer literal stays an int (900, not 900.0), so that what
    the dashboards are generated from reads as written. Raises ThresholdsError on any line that is
    neither blank, a `#` comment nor `key: number`, and on a key given twice."""
    path = Path(path)
    values = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = LINE_RE.fullmatch(line)
        if not m:
            raise ThresholdsError(f"{path}:{lineno}: expected `key: number` (snake_case key, plain decimal "
                                  f"number, nothing after it), got {line!r}")
        key, text = m.group("key"), m.group("value")
        if key in values:
            raise ThresholdsError(f"{path}:{lineno}: {key} given twice")
        values[key] = float(text) if "." in text else int(text)
    if not values:
        raise ThresholdsError(f"{path}: no thresholds")
    return values
