"""Shards: N exporter processes split the refresh units; together they export exactly what one
unsharded exporter exports, series for series and value for value, with no series twice."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from collectors import evaluate, shards
from collectors.exposition import CareKpiCollector
from collectors.store import Store
from kpis import config as kpi_config
from kpis import demo
from kpis.db.engines import create_all as create_engines
from kpis.sharding import Shard

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
# Series of the process rather than of the data: each shard has its own.
PROCESS_SERIES = ("carekpi_build_info",)


@pytest.fixture(scope="module")
def demo_config(module_db_url) -> kpi_config.Config:
    demo.seed(module_db_url, now=NOW)
    return kpi_config.parse(yaml.safe_load(demo.config_yaml(module_db_url, now=NOW)), "demo")


Sample = tuple[str, tuple[tuple[str, str], ...], float]


def series(config: kpi_config.Config) -> Counter[Sample]:
    """Every sample ``collect --as-of NOW --format prometheus`` gives for this config (a
    multiset: one process's own duplicates are the exposition tests' business)."""
    store = Store(config)
    engines = create_engines(config)
    try:
        results = evaluate.evaluate(config, engines, NOW, caps=store.caps)
    finally:
        for engine in engines.values():
            engine.dispose()
    for result in results:
        store.put([result], 60.0)
    collector = CareKpiCollector(store)
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    out: Counter[Sample] = Counter()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.startswith(PROCESS_SERIES) or sample.name.endswith(
                    ("_refresh_duration_seconds", "_last_success_timestamp_seconds",
                     "_evaluation_timestamp_seconds")):
                continue  # wall-clock facts of one run, not data
            out[(sample.name, tuple(sorted(sample.labels.items())), sample.value)] += 1
    return out


@pytest.mark.parametrize("count", [3])
def test_the_union_of_the_shards_is_the_unsharded_exporter(demo_config, count):
    whole = series(demo_config)
    union: Counter[Sample] = Counter()
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for index in range(1, count + 1):
        part = series(demo_config.model_copy(update={"shard": Shard(index, count)}))
        assert part, f"shard {index}/{count} exports nothing"
        names = {(name, labels) for name, labels, _ in part}
        assert not names & seen, f"shard {index}/{count} repeats {sorted(names & seen)[:3]}"
        seen |= names
        union.update(part)
    assert union == whole


def test_units_are_dealt_to_every_shard_and_each_unit_once(demo_config):
    units = evaluate.all_units(demo_config)
    for count in (1, 2, 3, 4):
        owners = shards.assign(units, count)
        assert sorted(set(owners)) == list(range(1, min(count, len(units)) + 1))
        parts = [shards.select(units, Shard(i, count)) for i in range(1, count + 1)]
        assert sorted(u.name for p in parts for u in p) == sorted(u.name for u in units)
    # deterministic: the same config gives the same assignment in every process
    assert shards.assign(units, 3) == shards.assign(list(units), 3)


def test_cost_is_spread(demo_config):
    units = evaluate.all_units(demo_config)
    loads = [sum(u.cost for u in shards.select(units, Shard(i, 2))) for i in (1, 2)]
    assert max(loads) <= 2 * min(loads), loads
