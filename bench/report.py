"""The table, the target checks (docs/benchmarks.md, "Reading the targets"), and the JSON results file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The service's performance targets, as ratios within one run (docs/benchmarks.md).
LATENCY_SLACK = 1.15  # service p50 within 15% of 2 round trips + the pool's processing
THROUGHPUT_VS_CONNECT = 4.0  # service >= 4x connect-per-request at 20 ms, 32 callers
SHARE_OF_DIRECT = 0.70  # service >= 70% of the direct pool on loopback, 8 callers, CSR
CPU_MS_PER_CSR = 3.0
ATTESTATION_CPU_MS = 2.0  # an attested provision adds at most this much service CPU
ATTESTATION_MODES = ("service+tls", "service+device")
RSS_MB_PER_WORKER = 80.0

COLUMNS = [  # (header, key, width)
    ("rtt", "rtt_ms", 4),
    ("flow", "flow", 4),
    ("mode", "mode", 27),  # service+postgresql@baseline
    ("n", "callers", 3),
    ("prov/s", "provisions_per_s", 7),
    ("p50 ms", "p50_ms", 7),
    ("p99 ms", "p99_ms", 7),
    ("err", "errors", 4),
    ("svc cpu ms", "service_cpu_ms_per_provision", 10),
    ("store ms", "store_ms_per_provision", 8),
    ("svc rss MB", "service_rss_mb", 10),
    ("emu cpu ms", "emulator_cpu_ms_per_provision", 10),
    ("cli cpu ms", "client_cpu_ms_per_provision", 10),
    ("busy%", "machine_busy_pct", 5),
    ("other%", "other_processes_pct", 6),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) and value.is_integer() else str(value)


def header() -> str:
    return "  ".join(
        f"{name:>{width}}" if i > 2 else f"{name:<{width}}" for i, (name, _, width) in enumerate(COLUMNS)
    )


def row(cell: dict[str, Any]) -> str:
    shown = dict(cell)
    rss = cell.get("service_peak_rss_mb")
    shown["service_rss_mb"] = max(rss) if rss else None
    return "  ".join(
        f"{_cell(shown.get(key)):>{width}}" if i > 2 else f"{_cell(shown.get(key)):<{width}}"
        for i, (_, key, width) in enumerate(COLUMNS)
    )


def _find(cells: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for cell in cells:
        if all(cell.get(k) == v for k, v in match.items()):
            return cell
    return None


def targets(cells: list[dict[str, Any]], flows: list[str], rtts: list[float]) -> list[dict[str, Any]]:
    """Each check: name, status PASS/MISS/N/A, the measured figure and what it was compared to."""
    checks: list[dict[str, Any]] = []
    slow = [r for r in rtts if r > 0]
    rtt = 20.0 if 20.0 in slow else (slow[0] if slow else None)

    def add(name: str, ok: bool | None, measured: str) -> None:
        checks.append(
            {
                "target": name,
                "status": "N/A" if ok is None else ("PASS" if ok else "MISS"),
                "measured": measured,
            }
        )

    for flow in flows:
        # 1. latency at one caller against the floor: 2 round trips + the direct pool's own
        # processing, i.e. the direct pool's p50 under the same RTT (its processing there is
        # also shown as measured on loopback, which idle-time effects make smaller).
        name = f"service p50 @{_ms(rtt)}ms/1 caller/{flow} <= 1.15 x floor (2 RTT + direct pool processing)"
        service = _find(cells, mode="service", flow=flow, callers=1, rtt_ms=rtt)
        direct_hi = _find(cells, mode="direct-pool", flow=flow, callers=1, rtt_ms=rtt)
        direct_lo = _find(cells, mode="direct-pool", flow=flow, callers=1, rtt_ms=0.0)
        if (
            rtt is None
            or not service
            or service["p50_ms"] is None
            or not direct_hi
            or direct_hi["p50_ms"] is None
        ):
            add(name, None, "cell not run")
        else:
            floor = direct_hi["p50_ms"]
            ratio = service["p50_ms"] / floor
            also = ""
            if direct_lo and direct_lo["p50_ms"] is not None:
                alt = 2 * rtt + direct_lo["p50_ms"]
                also = (
                    f"; vs 2 RTT + direct pool p50 on loopback ({alt:.1f} ms): {service['p50_ms'] / alt:.2f}x"
                )
            add(
                name,
                ratio <= LATENCY_SLACK,
                f"{service['p50_ms']} ms vs floor {floor} ms ({2 * rtt:g} ms + "
                f"{floor - 2 * rtt:.1f} ms processing, direct pool p50 @{_ms(rtt)}ms) = "
                f"{ratio:.2f}x{also}",
            )
        # 2. throughput at 32 callers against connect-per-request.
        name = f"service prov/s @{_ms(rtt)}ms/32 callers/{flow} >= 4 x connect-per-request"
        service = _find(cells, mode="service", flow=flow, callers=32, rtt_ms=rtt)
        connect = _find(cells, mode="connect-per-request", flow=flow, callers=32, rtt_ms=rtt)
        if not service or not connect or not connect["provisions_per_s"]:
            add(name, None, "cell not run")
        else:
            ratio = service["provisions_per_s"] / connect["provisions_per_s"]
            # Context: the other levels, and how busy the machine was (CPU-bound or not).
            others = []
            for c in sorted(
                (
                    c
                    for c in cells
                    if c["mode"] == "connect-per-request"
                    and c["flow"] == flow
                    and c["rtt_ms"] == rtt
                    and c["callers"] != 32
                ),
                key=lambda c: c["callers"],
            ):
                level = _find(cells, mode="service", flow=flow, callers=c["callers"], rtt_ms=rtt)
                if level and c["provisions_per_s"]:
                    others.append(
                        f"{level['provisions_per_s'] / c['provisions_per_s']:.2f}x at {c['callers']}"
                    )
            add(
                name,
                ratio >= THROUGHPUT_VS_CONNECT,
                f"{service['provisions_per_s']} vs {connect['provisions_per_s']} /s = {ratio:.2f}x "
                f"(machine busy {service['machine_busy_pct']}% / {connect['machine_busy_pct']}%"
                + (f"; {', '.join(others)}" if others else "")
                + ")",
            )
    # 3. the HTTP layer's cost on loopback.
    name = "service prov/s @loopback/8 callers/csr >= 70% of direct pool"
    service = _find(cells, mode="service", flow="csr", callers=8, rtt_ms=0.0)
    direct = _find(cells, mode="direct-pool", flow="csr", callers=8, rtt_ms=0.0)
    if not service or not direct or not direct["provisions_per_s"]:
        add(name, None, "cell not run")
    else:
        share = service["provisions_per_s"] / direct["provisions_per_s"]
        add(
            name,
            share >= SHARE_OF_DIRECT,
            f"{service['provisions_per_s']} vs {direct['provisions_per_s']} /s = {share:.0%}",
        )
    # 4. CPU per CSR provision: the worst service CSR cell.
    csr_cells = [
        c
        for c in cells
        if c["mode"] == "service" and c["flow"] == "csr" and c["service_cpu_ms_per_provision"] is not None
    ]
    name = "service CPU per CSR provision <= 3 ms (worst cell)"
    if not csr_cells:
        add(name, None, "cell not run")
    else:
        worst = max(csr_cells, key=lambda c: c["service_cpu_ms_per_provision"])
        best = min(csr_cells, key=lambda c: c["service_cpu_ms_per_provision"])
        add(
            name,
            worst["service_cpu_ms_per_provision"] <= CPU_MS_PER_CSR,
            f"worst {worst['service_cpu_ms_per_provision']} ms @{_ms(worst['rtt_ms'])}ms/"
            f"{worst['callers']} callers (best {best['service_cpu_ms_per_provision']} ms "
            f"@{_ms(best['rtt_ms'])}ms/{best['callers']})",
        )
    # 5. memory per worker.
    peaks = [mb for c in cells for mb in c.get("service_peak_rss_mb") or []]
    add(
        "service peak RSS per worker < 80 MB",
        (max(peaks) < RSS_MB_PER_WORKER) if peaks else None,
        f"{max(peaks)} MB" if peaks else "no service cell",
    )
    # 6. errors anywhere.
    total = sum(c["errors"] for c in cells)
    kinds: dict[str, int] = {}
    for c in cells:
        for kind, count in c["errors_by_kind"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    add(
        "no errors at any level (incl. mixed-up answers)",
        total == 0,
        f"{total} errors"
        + (f" {kinds}" if kinds else f" in {sum(c['provisions'] for c in cells)} provisions"),
    )
    return checks


def _ms(rtt: float | None) -> str:
    return "?" if rtt is None else f"{rtt:g}"


def target_lines(checks: list[dict[str, Any]]) -> list[str]:
    return [f"{c['status']:<4}  {c['target']}: {c['measured']}" for c in checks]


def write_results(results: dict[str, Any], directory: Path, date: str, hostname: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{date}-{hostname}.json"
    text = json.dumps(results, indent=2) + "\n"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def store_lines(cells: list[dict[str, Any]]) -> list[str]:
    """The store's cost: each `service+<store>` cell against the store-less `service` cell of the
    same condition (added service CPU per provision, throughput ratio)."""
    lines = []
    for cell in cells:
        mode = str(cell["mode"])
        if not mode.startswith("service+") or mode in ATTESTATION_MODES:
            continue
        base = _find(cells, rtt_ms=cell["rtt_ms"], flow=cell["flow"], callers=cell["callers"], mode="service")
        if base is None or not base.get("provisions_per_s"):
            continue
        added = (cell.get("service_cpu_ms_per_provision") or 0) - (
            base.get("service_cpu_ms_per_provision") or 0
        )
        ratio = cell["provisions_per_s"] / base["provisions_per_s"]
        lines.append(
            f"store {mode[8:]:<10} rtt {cell['rtt_ms']:g} {cell['flow']} n={cell['callers']}: "
            f"+{added:.2f} ms service CPU per provision (target <= 1), "
            f"{ratio:.0%} of the store-less throughput (target >= 90%)"
        )
    return lines


def attestation_lines(cells: list[dict[str, Any]]) -> list[str]:
    """What attestation costs: each service+device cell against the service+tls cell of the same
    condition (one service, the same TLS listener, an API key instead of the certificate)."""
    lines = []
    for cell in cells:
        if cell["mode"] != "service+device":
            continue
        base = _find(
            cells, rtt_ms=cell["rtt_ms"], flow=cell["flow"], callers=cell["callers"], mode="service+tls"
        )
        if base is None or not base.get("provisions_per_s"):
            continue
        device_ms = cell.get("service_cpu_ms_per_provision") or 0
        key_ms = base.get("service_cpu_ms_per_provision") or 0
        added = device_ms - key_ms
        verdict = "OK" if added <= ATTESTATION_CPU_MS else "MISS"
        lines.append(
            f"attestation rtt {cell['rtt_ms']:g} {cell['flow']} n={cell['callers']}: {device_ms:.2f} ms "
            f"service CPU per attested provision vs {key_ms:.2f} with an API key: {added:+.2f} ms "
            f"(target <= +{ATTESTATION_CPU_MS:g}) {verdict}; "
            f"{cell['provisions_per_s'] / base['provisions_per_s']:.0%} of its throughput"
        )
    return lines
