"""Write deploy/k8s/prometheusrule.yaml from deploy/prometheus/alerts.yml (one source of rules).

    python deploy/prometheus/to_prometheusrule.py           # rewrite the PrometheusRule
    python deploy/prometheus/to_prometheusrule.py --check   # exit 1 if it is out of date

Needs PyYAML (in the project's virtual environment).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = DEPLOY / "k8s" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/prometheus/to_prometheusrule.py:
# edit alerts.yml and run that script. spec.groups equals alerts.yml's groups (tests/deploy
# checks it). If your Prometheus selects rules by label (ruleSelector), add it to metadata.labels.
"""


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule_from_alerts(alerts_text: str | None = None) -> str:
    groups = yaml.safe_load(alerts_text if alerts_text is not None else ALERTS.read_text(encoding="utf-8"))["groups"]
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ragserve",
            "labels": {"app.kubernetes.io/name": "ragserve", "app.kubernetes.io/part-of": "ragserve"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True)


def main(argv: list[str]) -> int:
    wanted = prometheus_rule_from_alerts()
    if "--check" in argv:
        current = PROMETHEUS_RULE.read_text(encoding="utf-8") if PROMETHEUS_RULE.exists() else ""
        if current != wanted:
            print(
                f"{PROMETHEUS_RULE} is out of date: run python {Path(__file__).relative_to(DEPLOY.parent)}",
                file=sys.stderr,
            )
            return 1
        return 0
    PROMETHEUS_RULE.write_text(wanted, encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
