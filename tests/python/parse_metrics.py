"""Parses Prometheus exposition text (stdin) with the reference parser from
prometheus_client and prints its samples as JSON: [{"name", "labels", "value"}].

Used by tests/it/metrics.rs, so the server's /metrics is checked by a real parser, not by
string matching. A malformed exposition makes the parser raise: exit status 1.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
