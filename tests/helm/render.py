"""Renders and lints a Helm chart with Helm's own Go SDK (the helm-python-sdk package), for
tests/tests/helm.rs. Usage: render.py CHART VALUES_JSON. Prints JSON:
{"manifests": {template: text}, "lint": report} or {"error": message}."""

import json
import sys

import helm_python as helm


def main() -> None:
    chart_dir, values = sys.argv[1], json.loads(sys.argv[2])
    try:
        with helm.Chart.load(chart_dir) as chart:
            manifests = chart.render(values=values, name="fleet", namespace="drover")
        report = helm.lint(chart_dir, values, strict=True)
    except helm.HelmError as err:
        print(json.dumps({"error": str(err)}))
        return
    print(json.dumps({"manifests": manifests, "lint": report}))


if __name__ == "__main__":
    main()
