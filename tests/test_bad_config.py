"""Broken configs, generated: ``kpis.config.load`` raises ConfigError, one line, naming the file and
the dotted key, whatever is wrong; the CLI turns it into one stderr line and exit code 2.

Each generated case starts from the demo config (valid by construction: the first test proves
it) and breaks exactly one thing, so the key the error must name is known.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpis import catalog, opening_hours
from kpis import config as config_module
from kpis.demo import config_yaml
from kpis.errors import ConfigError, one_line

CARE = [sys.executable, "-m", "kpis"]
BASE_TEXT = config_yaml("sqlite:////nonexistent/carekpi-demo.db")
BASE: dict[str, Any] = yaml.safe_load(BASE_TEXT)
BASE["sources"]["demo"]["connect_timeout"] = "5s"
BASE["kpis"]["calendar"]["business_day"] = "10h"
FOLDER = Path(tempfile.mkdtemp(prefix="carekpi-bad-config-"))
ZONES = zoneinfo.available_timezones()
Loc = tuple[str, ...]


@dataclass
class Case:
    """A broken config: its YAML text, and the dotted key the error must name (None: the
    error is about the file itself) or a prefix relation to it."""

    what: str
    text: str | None  # None: the file does not exist
    key: Loc | None
    secrets: list[str] = field(default_factory=list)  # must never appear in the message


def nodes(node: Any, loc: Loc = ()) -> list[tuple[Loc, Any]]:
    """Every node of the parsed config with its location, the root excluded."""
    found: list[tuple[Loc, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()
    for key, value in items:
        found.append(((*loc, str(key)), value))
        found.extend(nodes(value, (*loc, str(key))))
    return found


def get(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def put(data: dict[str, Any], loc: Loc, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    parent = get(data, loc[:-1])
    if isinstance(parent, list):
        parent[int(loc[-1])] = value
    else:
        parent[loc[-1]] = value
    return data


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


ALL = nodes(BASE)
MAPPINGS = [(loc, v) for loc, v in [((), BASE), *ALL] if isinstance(v, dict)
            and loc[-1:] != ("clinic_targets",)]  # clinic names are free: any key is valid
SCALARS = [(loc, v) for loc, v in ALL if not isinstance(v, dict | list)]
CONTAINERS = [(loc, v) for loc, v in ALL if isinstance(v, dict | list)]
STRINGS = [(loc, v) for loc, v in SCALARS if isinstance(v, str)]
DURATIONS: list[Loc] = [
    ("sources", "demo", "query_timeout"), ("sources", "demo", "refresh_interval"),
    ("sources", "demo", "connect_timeout"), ("kpis", "response_sla", "sla"),
    ("kpis", "response_sla", "sla_overrides", "0", "sla"), ("kpis", "follow_up", "sla"),
    ("kpis", "service_level", "threshold"), ("kpis", "windows", "1"),
    ("kpis", "calendar", "business_day"),
]
CODED = [(loc, v) for loc, v in ALL if len(loc) == 4 and loc[0] == "entities"
         and loc[2] == "codes" and len(v) >= 2]
TIMEZONES: list[Loc] = [("kpis", "calendar", "timezone"),
                        *[("entities", e, "timezone") for e in BASE["entities"]]]
KPIS = catalog.by_key()
PARAMS = ("sla", "sla_overrides", "threshold", "item", "lookback")
NOT_APPLICABLE = [(k, p) for k, kpi in KPIS.items() for p in PARAMS if p not in kpi.params]
PARAM_VALUES = {"sla": "1d", "sla_overrides": [{"channel": "portal", "sla": "1h"}],
                "threshold": "30s", "item": "overall", "lookback": "7d"}
TREND_ONLY = sorted(k for k, kpi in KPIS.items() if kpi.target is None)

names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(lambda s: "zz" + s)
junk = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=10),
                 st.lists(st.integers(), max_size=2), st.dictionaries(names, st.integers(),
                                                                       max_size=2))


@st.composite
def unknown_keys(draw: st.DrawFn) -> Case:
    loc, mapping = draw(st.sampled_from(MAPPINGS))
    key = draw(names.filter(lambda k: k not in mapping))
    data = put(BASE, (*loc, key), draw(junk)) if loc else {**BASE, key: draw(junk)}
    return Case(f"unknown key {key!r} under {'.'.join(loc) or 'the top'}", dump(data), (*loc, key))


@st.composite
def wrong_types(draw: st.DrawFn) -> Case:
    if draw(st.booleans()):
        loc, _ = draw(st.sampled_from(SCALARS))
        value = draw(st.sampled_from([{"zz": 1}, [{"zz": 1}], [[]]]))
    else:
        loc, _ = draw(st.sampled_from(CONTAINERS))
        value = draw(st.sampled_from(["zz", 7, True]))
    return Case(f"{value!r} at {'.'.join(loc)}", dump(put(BASE, loc, value)), loc)


bad_duration_text = st.one_of(
    st.sampled_from(["-5s", "5x", "five minutes", "1.5.2h", "nan", "inf", "1e400s", "s", "",
                     "  ", "1 bd x", "10 years", "99999999999999999999d", "0x10s"]),
    st.text(max_size=8).filter(lambda s: not any(c.isdigit() for c in s)),
)
bad_duration = st.one_of(bad_duration_text, st.sampled_from(
    [-1, -0.5, float("nan"), float("inf"), True, False, None, [], {}, 1e300]))


@st.composite
def bad_durations(draw: st.DrawFn) -> Case:
    loc = draw(st.sampled_from(DURATIONS))
    value = draw(bad_duration)
    if loc[1] in ("response_sla", "follow_up") and value is None:
        value = "nope"  # an SLA may be left out (null): the catalog default applies
    return Case(f"duration {value!r} at {'.'.join(loc)}", dump(put(BASE, loc, value)), loc)


@st.composite
def bad_urls(draw: st.DrawFn) -> Case:
    password = "Pw" + draw(st.text("abcdefghXYZ0123456789", min_size=6, max_size=10))
    value = draw(st.one_of(
        st.just(f"postgresql+psycopg://carekpi:{password}@db.example:notaport/x"),
        st.just(f"mysql+pymysql://carekpi:{password}@db.example:99x/x"),
        st.text(max_size=20).filter(lambda s: "://" not in s),
        st.sampled_from(["://", "sqlite", "postgresql//host/db", " ", "http:/x"]),
    ))
    loc = ("sources", "demo", "url")
    return Case(f"url {value!r}", dump(put(BASE, loc, value)), loc, secrets=[password])


@st.composite
def yaml_errors(draw: st.DrawFn) -> Case:
    lines = BASE_TEXT.splitlines()
    at = draw(st.integers(0, len(lines)))
    fragment = draw(st.sampled_from([
        "sources: [", "  - {a: ", "\tversion: 1", "kpis: *nowhere", "version: 'open",
        "!!python/object:os.system {}", "key: value: other", "version: 1\nversion: 1",
        "  bad indent: [1,", '"unterminated', "{{{{", "? [a]\n: b\n? [a]\n: c", "%YAML 9.9",
        "x: " + "[" * 200, "@reserved",
    ]))
    text = "\n".join([*lines[:at], fragment, *lines[at:]])
    return Case(f"YAML with {fragment!r} at line {at + 1}", text, None)


@st.composite
def missing_env(draw: st.DrawFn) -> Case:
    loc, value = draw(st.sampled_from(STRINGS))
    name = "CAREKPI_UNSET_" + draw(st.text("ABCXYZ019_", min_size=1, max_size=8))
    assert name not in os.environ
    mutated = draw(st.sampled_from([f"${{env:{name}}}", f"{value}${{env:{name}}}"]))
    return Case(f"{mutated} at {'.'.join(loc)}", dump(put(BASE, loc, mutated)), loc)


@st.composite
def missing_secret_files(draw: st.DrawFn) -> Case:
    loc, _ = draw(st.sampled_from(STRINGS))
    target = draw(st.sampled_from(["/nonexistent/secret", "no-such-file.txt", str(FOLDER),
                                   "/proc/1/mem"]))
    mutated = f"${{file:{target}}}"
    return Case(f"{mutated} at {'.'.join(loc)}", dump(put(BASE, loc, mutated)), loc)


@st.composite
def overlapping_codes(draw: st.DrawFn) -> Case:
    loc, mapping = draw(st.sampled_from(CODED))
    source, target = draw(st.permutations(list(mapping)).map(lambda p: p[:2]))
    code = draw(st.sampled_from(mapping[source]))
    data = put(BASE, (*loc, target), [*mapping[target], code])
    return Case(f"{code!r} in {source} and {target} at {'.'.join(loc)}", dump(data), loc)


@st.composite
def bad_timezones(draw: st.DrawFn) -> Case:
    loc = draw(st.sampled_from(TIMEZONES))
    zone = draw(st.one_of(
        st.sampled_from(["Mars/Olympus", "UTC+2", "../../etc/passwd", "", "Europe/", "/UTC",
                         "America/New York", "EST5EDT,M3.2.0,M11.1.0"]),
        st.text(max_size=15)).filter(lambda z: z not in ZONES))
    return Case(f"time zone {zone!r} at {'.'.join(loc)}", dump(put(BASE, loc, zone)), loc)


@st.composite
def bad_opening_hours(draw: st.DrawFn) -> Case:
    day = draw(st.sampled_from(["mon", "sat", "sun"]))
    span = draw(st.one_of(
        st.sampled_from(["18:00-08:00", "08:00-08:00", "8-18", "08:00 - 18:00", "24:00-24:30",
                         "08:60-18:00", "08:00-25:00", "closed", "", "08:00-18:00-20:00"]),
        st.text(max_size=11).filter(lambda s: not opening_hours.HOURS.match(s))))
    loc = ("kpis", "calendar", "hours", day)
    return Case(f"hours {span!r} on {day}", dump(put(BASE, loc, span)), loc)


@st.composite
def unknown_kpis(draw: st.DrawFn) -> Case:
    key = draw(st.one_of(names, st.sampled_from(["noshow", "No_Show", "nps ", "A1", "B2"])))
    loc = ("kpis", key)
    return Case(f"unknown KPI {key!r}", dump(put(BASE, loc, {"enabled": True})), loc)


@st.composite
def settings_that_do_not_apply(draw: st.DrawFn) -> Case:
    if draw(st.booleans()):
        key, param = draw(st.sampled_from(NOT_APPLICABLE))
        section = {**(BASE["kpis"].get(key) or {}), param: PARAM_VALUES[param]}
    else:
        key, param = draw(st.sampled_from(TREND_ONLY)), "target"
        section = draw(st.sampled_from([{"target": 0.5}, {"clinic_targets": {"RVL": 0.5}}]))
    return Case(f"{param} on {key}", dump(put(BASE, ("kpis", key), section)), ("kpis", key))


broken = st.one_of(unknown_keys(), wrong_types(), bad_durations(), bad_urls(), yaml_errors(),
                   missing_env(), missing_secret_files(), overlapping_codes(), bad_timezones(),
                   bad_opening_hours(), unknown_kpis(), settings_that_do_not_apply())


def write(case: Case, name: str = "carekpi.yaml") -> Path:
    path = FOLDER / name
    if case.text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(case.text, encoding="utf-8")
    return path


def expect_one_line_error(case: Case, path: Path) -> ConfigError:
    try:
        config_module.load(path)
    except ConfigError as exc:
        error = exc
    else:
        raise AssertionError(f"accepted: {case.what}")
    message = str(error)
    assert len(message.splitlines()) == 1 and "\n" not in message, (case.what, message)
    assert message.startswith(f"{path}: "), (case.what, message)
    for secret in case.secrets:
        assert secret not in message, (case.what, message)
    if case.key is None:  # a file-level problem: the message says where in the file
        assert "YAML" in message or "expected a mapping" in message, (case.what, message)
        assert error.key == "" or error.key in message
        return error
    expected = one_line(".".join(case.key))
    related = (error.key == expected or error.key.startswith(expected + ".")
               or expected.startswith(error.key + "."))
    assert related and len(error.key.split(".")) >= min(2, len(case.key)), (
        case.what, message, expected)
    assert message.startswith(f"{path}: {error.key}: "), (case.what, message)
    return error


def test_the_base_config_is_valid() -> None:
    path = write(Case("base", dump(BASE), None))
    config = config_module.load(path)
    assert config.sources["demo"].connect_timeout.seconds == 5


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(broken)
def test_every_broken_config_is_one_config_error_naming_file_and_key(case: Case) -> None:
    expect_one_line_error(case, write(case))


@pytest.mark.parametrize("what", ["missing", "directory", "binary", "empty", "list"])
def test_unreadable_or_shapeless_files(what: str, tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    if what == "directory":
        path.mkdir()
    elif what == "binary":
        path.write_bytes(b"\xff\xfe\x00version: 1\n")
    elif what in ("empty", "list"):
        path.write_text("" if what == "empty" else "- 1\n- 2\n")
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and len(message.splitlines()) == 1, message


def test_keys_and_values_with_newlines_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(put(BASE, ("sources", "demo", "bad\nkey\r"), 1)))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert str(caught.value).startswith(f"{path}: sources.demo.bad\\nkey\\r: unknown key; one "
                                        "of url, query_timeout, pool_size, refresh_interval")


def test_a_refused_sql_expression_says_why(tmp_path: Path) -> None:
    """A {sql: ...} field mapping that writes is reported as such, not as 'not a string'."""
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(put(BASE, ("entities", "calls", "fields", "queue"),
                             {"sql": "queue_name; DELETE FROM call_log"})))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == "entities.calls.fields.queue.sql"
    assert "';'" in caught.value.message


def test_a_label_cap_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(put(BASE, ("labels", "limits"), {"clinic": 0})))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == "labels.limits.clinic"


@pytest.mark.parametrize(("key", "value", "message"), [
    (("checks", "since"), float("inf"), "a duration must be finite and at most 10 years"),
    (("checks", "schedule"), "0s", "must be longer than zero"),
    (("checks", "freshness_max_age"), 0, "must be longer than zero"),
    (("checks", "since"), "600w", "a duration must be finite and at most 10 years"),
])
def test_checks_durations_are_bounded_like_every_other(key, value, message, tmp_path: Path
                                                       ) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump({**BASE, "checks": {key[-1]: value}}))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == ".".join(key)
    assert message in caught.value.message


@pytest.mark.parametrize(("key", "value", "message"), [
    (("kpis", "no_show", "target"), 10, "a ratio from 0 to 1 (0.1 for 10 %), not 10"),
    (("kpis", "no_show", "target"), -0.1, "a ratio from 0 to 1"),
    (("kpis", "no_show", "clinic_targets", "RVL"), 1.5, "a ratio from 0 to 1"),
    (("kpis", "wait_to_be_seen", "target"), -60, "seconds, 0 or more"),
    (("kpis", "nps", "target"), 150, "a score from -100 to 100"),
    (("kpis", "no_show", "target"), float("nan"), "a ratio from 0 to 1"),
])
def test_a_target_the_kpi_can_never_reach_is_refused(key, value, message, tmp_path: Path
                                                     ) -> None:
    """10 meant as 10 % would export a target no rate can breach: no alert, ever."""
    section: object = value
    for part in reversed(key[2:]):
        section = {part: section}
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(put(BASE, key[:2], section)))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == ".".join(key)
    assert message in caught.value.message


def test_an_impossible_date_is_a_located_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(BASE) + "# a holiday that does not exist\n"
                    "extra_holidays: &h [2026-09-31]\n")
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line ") and len(message.splitlines()) == 1
    assert "'2026-09-31' is not a valid date" in message


@pytest.mark.parametrize(("key", "value", "where", "message"), [
    (("sources", "demo"), {"ulr": "sqlite:///x.db"}, "sources.demo.url",
     "Field required; is it misspelled as 'ulr'?"),
    (("kpis", "windows"), ["1h", "1d", "30x"], "kpis.windows", "(got '30x')"),
])
def test_the_error_points_at_what_the_user_wrote(key, value, where, message, tmp_path: Path
                                                 ) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(put(BASE, key, value)))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == where and message in caught.value.message


def test_an_sla_override_that_can_never_apply_is_refused(tmp_path: Path) -> None:
    """The first matching override wins: a more specific one after a broader one is dead."""
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(put(BASE, ("kpis", "response_sla"), {"sla_overrides": [
        {"priority": "urgent", "sla": "4h"}, {"channel": "email", "priority": "urgent",
                                              "sla": "2h"}]})))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == "kpis.response_sla.sla_overrides"
    assert "override 2 never applies: override 1 comes first" in caught.value.message
    path.write_text(dump(put(BASE, ("kpis", "response_sla"), {"sla_overrides": [
        {"channel": "email", "priority": "urgent", "sla": "2h"},
        {"priority": "urgent", "sla": "4h"}]})))
    config_module.load(path)  # the specific one first: both apply


def test_a_typo_in_a_kpi_section_suggests_that_sections_keys(tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(put(BASE, ("kpis", "no_show", "targte"), 0.1)))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == "kpis.no_show.targte"
    assert "did you mean 'target'?" in caught.value.message


def test_a_duplicate_key_is_refused_not_silently_overridden(tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(BASE_TEXT.replace("  no_show:\n", "  no_show:\n    target: 0.2\n  no_show:\n"))
    with pytest.raises(ConfigError, match=r"duplicate key 'no_show'"):
        config_module.load(path)


CLI_CASES = [
    Case("unknown key", dump(put(BASE, ("kpis", "no_show", "targett"), 0.1)),
         ("kpis", "no_show", "targett")),
    Case("bad duration", dump(put(BASE, ("sources", "demo", "refresh_interval"), "5 minutes")),
         ("sources", "demo", "refresh_interval")),
    Case("bad url with password",
         dump(put(BASE, ("sources", "demo", "url"), "postgresql://u:CliSecret9@h:port/x")),
         ("sources", "demo", "url"), secrets=["CliSecret9"]),
    Case("YAML syntax", BASE_TEXT + "\nkpis: [\n", None),
    Case("missing env", dump(put(BASE, ("sources", "demo", "url"), "${env:CAREKPI_UNSET_CLI}")),
         ("sources", "demo", "url")),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.what for c in CLI_CASES])
def test_cli_validate_exits_2_with_one_line(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(case.text or "")
    expected = str(expect_one_line_error(case, path))
    done = subprocess.run([*CARE, "config", "validate", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr == f"carekpi: {expected}\n"
    assert "Traceback" not in done.stderr


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    done = subprocess.run([*CARE, "config", "validate", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", f"carekpi: {path}: file not found\n")


def test_config_show_output_loads_back_with_the_password_masked(tmp_path: Path) -> None:
    """`config show` prints durations as users write them (not {seconds: ...} mappings)."""
    data = put(BASE, ("sources", "demo", "url"), "postgresql://u:ShowSecret7@db.example/x")
    path = tmp_path / "carekpi.yaml"
    path.write_text(dump(data))
    shown = yaml.safe_dump(config_module.masked(config_module.load(path)), sort_keys=False)
    assert "ShowSecret7" not in shown and "u:***@db.example/x" in shown
    assert "query_timeout: 30s" in shown and "sla: 1bd" in shown
    path.write_text(shown)
    again = config_module.load(path)
    assert again.kpis.settings("response_sla").sla == config_module.load(
        write(Case("base", dump(BASE), None))).kpis.settings("response_sla").sla
