"""GET /metrics read back: the samples of the Prometheus text exposition, summed by labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One read of /metrics: `value(name, **labels)` sums every sample of that name (with the
    suffix, e.g. `_total`, `_count`) whose labels include the given ones (0.0 when none)."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {
            labels[label]
            for sample_name, labels, _ in self.samples
            if sample_name == name and label in labels
        }


def scrape(get: Callable[..., Any], **kwargs: Any) -> Scrape:
    """`get` is an ApiClient's get or requests.get-like: GET /metrics must answer 200."""
    response = get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def rejections(before: Scrape, after: Scrape, step: str, error_code: str) -> float:
    """How many of `step`'s AWS calls AWS rejected with `error_code` between the two scrapes."""
    return delta(before, after, "provisioner_aws_rejections_total", step=step, error_code=error_code)
