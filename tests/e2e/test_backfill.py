"""End-to-end: `tracebridge backfill` over generated sample logs, checked against their truth.

The bridge runs as a real process on the samples of `scripts/gen_samples.py` (rotated, gzipped,
windows-1251, across a DST switch, with noise and malformed lines) and exports to a real
OTLP/HTTP receiver (`otlp_receiver.py`) or to its `file:` export (`otlp_decode.py`). Every
expectation is computed from `truth.json`; nothing about the samples is hard-coded here.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import (BackfillRun, Receiver, config_services, make_config, run_backfill,
                      start_receiver)
from otlp_decode import load_file_export

ARROW = " → "  # U+2192 with a space either side
# Small batches make the export tests send several requests, so "each batch once" and
# "retry the refused batch" are about more than one batch.
SMALL_BATCHES = {"max_batch_spans": 100}
MAX_REPORTED = 12  # problems listed in a failure message; the count says how many in all


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

@dataclass
class Export:
    """The spans one backfill delivered, with the run and the receiver's request log."""
    run: BackfillRun
    spans: list
    requests: list

    @property
    def summary(self) -> dict:
        return self.run.summary


def backfill_to_receiver(bridge: Path, config: Path, work: Path, *args, paths=(),
                         timeout=None, **receiver_options) -> Export:
    rx: Receiver = start_receiver(work / "receiver", **receiver_options)
    try:
        kwargs = {"timeout": timeout} if timeout else {}
        run = run_backfill(bridge, config, *args, export=rx.url, paths=paths, **kwargs)
    finally:
        rx.stop()
    return Export(run, rx.spans(), rx.requests())


def order_of(span) -> str | None:
    return span["attributes"].get("order.id")


def spans_by_order(spans) -> dict:
    grouped = defaultdict(list)
    for span in spans:
        grouped[order_of(span)].append(span)
    return grouped


def spans_by_trace(spans) -> dict:
    grouped = defaultdict(list)
    for span in spans:
        grouped[span["trace_id"]].append(span)
    return grouped


def raw_set(spans) -> set:
    return {span["raw"] for span in spans}


def fmt_ns(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def span_label(span) -> str:
    return (f"{span['name']!r} [{span['service']}] {fmt_ns(span['start'])}..{fmt_ns(span['end'])}"
            f" span_id={span['span_id']}")


def report(problems: list, what: str) -> str:
    shown = "\n  ".join(problems[:MAX_REPORTED])
    more = f"\n  … and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return f"{len(problems)} {what}:\n  {shown}{more}"


def assert_no_problems(problems: list, what: str):
    if problems:
        pytest.fail(report(problems, what), pytrace=False)


def assert_same_spans(a: list, b: list, label_a: str, label_b: str):
    """Equal sets of raw span bytes; otherwise say how many differ and show the first
    differing order span by span."""
    only_a, only_b = raw_set(a) - raw_set(b), raw_set(b) - raw_set(a)
    if not only_a and not only_b:
        return
    lines = [f"span bytes differ: {label_a} has {len(raw_set(a))} distinct spans, "
             f"{label_b} {len(raw_set(b))}; {len(only_a)} only in {label_a}, "
             f"{len(only_b)} only in {label_b}"]
    by_a, by_b = spans_by_order(a), spans_by_order(b)
    differing = sorted({order_of(s) or "" for s in a + b if s["raw"] in only_a | only_b})
    lines.append(f"orders that differ: {len(differing)} (first: {differing[:5]})")
    first = differing[0]
    lines.append(f"first differing order {first!r}:")
    for label, spans, only in ((label_a, by_a, only_a), (label_b, by_b, only_b)):
        for span in sorted(spans.get(first or None, []), key=lambda s: (s["start"], s["name"])):
            if span["raw"] in only:
                lines.append(f"  only in {label}: {span_label(span)} trace={span['trace_id']}")
    # The same span id on both sides: say which fields differ.
    twins = {s["span_id"]: s for s in b if s["raw"] in only_b}
    for span in a:
        twin = twins.get(span["span_id"])
        if span["raw"] in only_a and twin is not None:
            fields = {k: (span[k], twin[k]) for k in span if k != "raw" and span[k] != twin[k]}
            lines.append(f"same span id {span['span_id']} {span['name']!r} differs in "
                         f"{', '.join(f'{k}: {x!r} vs {y!r}' for k, (x, y) in fields.items()) or 'encoding only'}"
                         f"\n  {label_a}: {span['raw']}\n  {label_b}: {twin['raw']}")
            break
    pytest.fail("\n".join(lines), pytrace=False)


def truth_orders(samples) -> dict:
    return samples.truth["orders"]


def transitions_of(order: dict) -> list:
    """Consecutive status pairs of a truth order: (from, to) status dicts."""
    statuses = order["statuses"]
    return list(zip(statuses, statuses[1:]))


def subdirectories(root: Path) -> list:
    return sorted(p for p in root.iterdir() if p.is_dir())


# ---------------------------------------------------------------------------
# the runs most tests read (each once per module)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_run(samples, bridge_bin, tmp_path_factory) -> Export:
    """Backfill of the configured sources to a receiver that accepts everything."""
    work = tmp_path_factory.mktemp("clean")
    export = backfill_to_receiver(bridge_bin, make_config(samples.dir, work), work)
    export.run.expect_exit(0)
    assert export.spans, f"the receiver got no span at all\n{export.run.describe()}"
    return export


@pytest.fixture(scope="module")
def clean_traces(clean_run) -> dict:
    """order id -> spans of that order's trace (every span carries order.id, see the test)."""
    return spans_by_order(clean_run.spans)


@pytest.fixture(scope="module")
def archive_runs(samples, bridge_bin, tmp_path_factory) -> dict:
    """Backfills by PATH of two copies of the samples: `plain` with every .gz unpacked
    (same name minus .gz), `gzipped` with every plain rotated `.N` file gzipped to `.N.gz`."""
    runs = {}
    for variant in ("plain", "gzipped"):
        work = tmp_path_factory.mktemp(f"archive-{variant}")
        copy = work / "archive"
        shutil.copytree(samples.dir, copy)
        changed = 0
        for path in sorted(copy.rglob("*")):
            if variant == "plain" and path.suffix == ".gz":
                path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
                path.unlink()
                changed += 1
            elif variant == "gzipped" and path.is_file() and path.suffix[1:].isdigit():
                Path(f"{path}.gz").write_bytes(gzip.compress(path.read_bytes(), mtime=0))
                path.unlink()
                changed += 1
        assert changed, f"the samples have no file to {'gunzip' if variant == 'plain' else 'gzip'}"
        export = backfill_to_receiver(bridge_bin, make_config(samples.dir, work), work,
                                      paths=subdirectories(copy))
        export.run.expect_exit(0)
        runs[variant] = export
    return runs


# ---------------------------------------------------------------------------
# trace shape
# ---------------------------------------------------------------------------

def test_every_order_becomes_exactly_one_trace_whose_spans_all_carry_its_order_id(
        clean_run, samples):
    spans = clean_run.spans
    missing = [span_label(s) for s in spans if not order_of(s)]
    assert_no_problems(missing, "spans without attribute order.id")

    problems = []
    for trace_id, trace in spans_by_trace(spans).items():
        ids = Counter(order_of(s) for s in trace)
        if len(ids) != 1:
            problems.append(f"trace {trace_id} mixes orders {dict(ids)}")
    order_traces = defaultdict(set)
    for span in spans:
        order_traces[order_of(span)].add(span["trace_id"])
    for order_id, traces in sorted(order_traces.items()):
        if len(traces) != 1:
            problems.append(f"order {order_id} is split over {len(traces)} traces {sorted(traces)}")
    assert_no_problems(problems, "traces that are not one per order")

    expected = set(truth_orders(samples))
    got = set(order_traces)
    assert got == expected, (
        f"{len(got)} orders have traces, truth has {len(expected)}; "
        f"missing: {sorted(expected - got)[:10]}, not in truth: {sorted(got - expected)[:10]}")
    assert len(spans_by_trace(spans)) == len(expected)
    assert all(set(t) != {"0"} for t in spans_by_trace(spans)), "an all-zero trace id"


def test_each_trace_holds_a_root_one_span_per_transition_and_one_per_step(clean_traces, samples):
    problems = []
    for order_id, order in truth_orders(samples).items():
        trace = clean_traces.get(order_id, [])
        expected = Counter([f"order {order_id}"]
                           + [f"{a['status']}{ARROW}{b['status']}" for a, b in transitions_of(order)]
                           + [step["name"] for step in order["steps"]])
        got = Counter(s["name"] for s in trace)
        if got != expected:
            problems.append(f"order {order_id}: missing {dict(expected - got)}, "
                            f"unexpected {dict(got - expected)}")
    assert_no_problems(problems, "orders whose trace has other spans than root, transitions, steps")


def test_root_span_covers_the_order_and_marks_unfinished_orders_incomplete(clean_traces, samples):
    problems = []
    for order_id, order in truth_orders(samples).items():
        trace = clean_traces.get(order_id, [])
        roots = [s for s in trace if s["name"] == f"order {order_id}"]
        if len(roots) != 1:
            problems.append(f"order {order_id}: {len(roots)} root spans named 'order {order_id}'")
            continue
        root = roots[0]
        times = ([s["time_unix_nano"] for s in order["statuses"] + order["events"]]
                 + [t for step in order["steps"] for t in (step["start_unix_nano"],
                                                           step["end_unix_nano"])])
        if root["parent_span_id"]:
            problems.append(f"order {order_id}: root has parent {root['parent_span_id']}")
        if root["start"] != min(times) or root["end"] < max(times):
            problems.append(f"order {order_id}: root {fmt_ns(root['start'])}..{fmt_ns(root['end'])}"
                            f" does not cover the order {fmt_ns(min(times))}..{fmt_ns(max(times))}")
        incomplete = root["attributes"].get("order.incomplete")
        if order["final"] and incomplete not in (None, False):
            problems.append(f"order {order_id} reached {order['statuses'][-1]['status']} but its"
                            f" root has order.incomplete={incomplete!r}")
        if not order["final"] and incomplete is not True:
            problems.append(f"order {order_id} stopped at {order['statuses'][-1]['status']} "
                            f"({order['fate']}) but its root has order.incomplete={incomplete!r}")
        ids = {s["span_id"] for s in trace}
        orphans = [s["name"] for s in trace if s is not root and s["parent_span_id"] not in ids]
        if orphans:
            problems.append(f"order {order_id}: spans whose parent is not in the trace: {orphans}")
    assert_no_problems(problems, "orders with a wrong root span")


def test_every_span_reports_the_service_that_logged_it(clean_run, clean_traces, samples):
    services = {s["service"] for s in config_services(clean_run.run.config).values()}
    problems = [f"{span_label(s)}: service.name {s['service']!r} is none of {sorted(services)}"
                for s in clean_run.spans if s["service"] not in services]
    for order_id, order in truth_orders(samples).items():
        trace = clean_traces.get(order_id, [])
        expected = {f"{a['status']}{ARROW}{b['status']}": b["service"]
                    for a, b in transitions_of(order)}
        expected.update({step["name"]: step["service"] for step in order["steps"]})
        for span in trace:
            want = expected.get(span["name"])
            if want is not None and span["service"] != want:
                problems.append(f"order {order_id}: {span_label(span)} should be {want!r}")
            if span["resource"].get("service.name") != span["service"]:
                problems.append(f"order {order_id}: {span_label(span)} resource {span['resource']}")
    assert_no_problems(problems, "spans with a wrong service.name")


def test_enduser_id_is_the_orders_user_and_present_on_the_order(clean_traces, samples):
    problems = []
    for order_id, order in truth_orders(samples).items():
        trace = clean_traces.get(order_id, [])
        users = Counter(s["attributes"].get("enduser.id") for s in trace)
        users.pop(None, None)
        if set(users) - {order["user_id"]}:
            problems.append(f"order {order_id}: enduser.id {dict(users)}, truth {order['user_id']!r}")
        elif not users:
            problems.append(f"order {order_id}: no span has enduser.id {order['user_id']!r}")
    assert_no_problems(problems, "orders with a missing or wrong enduser.id")


# ---------------------------------------------------------------------------
# content: time, encoding, aliases, events
# ---------------------------------------------------------------------------

def test_transition_span_durations_equal_time_between_statuses_across_dst(clean_traces, samples):
    dst = samples.truth.get("dst_switch_unix_nano")
    problems, checked, crossing = [], 0, 0
    for order_id, order in truth_orders(samples).items():
        by_name = defaultdict(list)
        for span in clean_traces.get(order_id, []):
            by_name[span["name"]].append(span)
        for a, b in transitions_of(order):
            name = f"{a['status']}{ARROW}{b['status']}"
            across = dst is not None and a["time_unix_nano"] < dst <= b["time_unix_nano"]
            crossing += across
            checked += 1
            where = f"order {order_id} {name}{' (across DST)' if across else ''}"
            spans = by_name.get(name, [])
            if len(spans) != 1:
                problems.append(f"{where}: {len(spans)} spans")
                continue
            span = spans[0]
            want = b["time_unix_nano"] - a["time_unix_nano"]
            if (span["start"], span["end"]) != (a["time_unix_nano"], b["time_unix_nano"]):
                problems.append(
                    f"{where}: span {fmt_ns(span['start'])}..{fmt_ns(span['end'])} "
                    f"({span['end'] - span['start']} ns), truth {fmt_ns(a['time_unix_nano'])}.."
                    f"{fmt_ns(b['time_unix_nano'])} ({want} ns), off by "
                    f"{span['start'] - a['time_unix_nano']} / {span['end'] - b['time_unix_nano']} ns")
            attrs = span["attributes"]
            if (attrs.get("order.status.from"), attrs.get("order.status.to")) != (a["status"],
                                                                                  b["status"]):
                problems.append(f"{where}: order.status.from/to = {attrs.get('order.status.from')!r}"
                                f"/{attrs.get('order.status.to')!r}")
    assert checked, "truth has no transition at all"
    assert_no_problems(problems, f"of {checked} transitions wrong ({crossing} cross the DST switch)")
    if dst is not None:
        assert crossing, "no transition in the samples crosses the DST switch: DST is not covered"


def test_windows_1251_mes_text_arrives_as_utf8_step_names_and_times(clean_traces, clean_run,
                                                                    samples):
    step_names = {step["name"] for o in truth_orders(samples).values() for step in o["steps"]}
    assert any("\u0400" <= ch <= "\u04ff" for name in step_names for ch in name), \
        "no Cyrillic step name in the truth: the windows-1251 decoding is not covered"
    problems = []
    for order_id, order in truth_orders(samples).items():
        spans = [s for s in clean_traces.get(order_id, []) if s["name"] in step_names]
        got = sorted((s["name"], s["start"], s["end"]) for s in spans)
        want = sorted((st["name"], st["start_unix_nano"], st["end_unix_nano"]) for st in order["steps"])
        if got != want:
            problems.append(f"order {order_id}: step spans {got}, truth {want}")
    garbled = sorted({s["name"] for s in clean_run.spans if "\ufffd" in s["name"]})
    assert_no_problems(problems, "orders whose MES step spans differ from the truth")
    assert not garbled, f"span names with replacement characters: {garbled[:10]}"


def test_mes_job_id_lines_join_their_orders_trace_even_when_logged_before_the_link(
        clean_traces, samples):
    orders = truth_orders(samples)
    early = [oid for oid, o in orders.items() if o["alias_before_link"]]
    assert early, "truth has no order whose job status came before the link: not covered"
    problems = []
    for order_id, order in orders.items():
        if not order["job_id"]:
            continue
        trace = clean_traces.get(order_id, [])
        want = Counter([f"{a['status']}{ARROW}{b['status']}" for a, b in transitions_of(order)
                        if b["service"] == "MES"]
                       + [st["name"] for st in order["steps"] if st["service"] == "MES"])
        got = Counter(s["name"] for s in trace if s["service"] == "MES"
                      and s["name"] != f"order {order_id}")
        if got != want:
            tag = " (job status logged before the link)" if order["alias_before_link"] else ""
            problems.append(f"order {order_id} job {order['job_id']}{tag}: MES spans missing "
                            f"{dict(want - got)}, foreign {dict(got - want)}")
        # Landing in the right trace is what counts here; event names are checked elsewhere.
        times = Counter(e["time"] for s in trace for e in s["events"])
        for event in order["events"]:
            if event["service"] == "MES" and not times[event["time_unix_nano"]]:
                problems.append(f"order {order_id} job {order['job_id']}: no span event at "
                                f"{fmt_ns(event['time_unix_nano'])} (MES {event['name']!r})")
    assert_no_problems(problems, f"orders with MES job lines in the wrong trace "
                                 f"({len(early)} orders have the job status before the link)")


def test_lines_that_are_not_transitions_become_span_events_of_their_order(clean_traces, samples):
    problems = []
    for order_id, order in truth_orders(samples).items():
        problems += event_problems(order_id, clean_traces.get(order_id, []), order["events"])
    assert_no_problems(problems, "truth events not found exactly once in their order's trace")


def event_problems(order_id: str, trace: list, truth_events: list) -> list:
    """Each truth event must be exactly one span event (same name, same time) in the trace."""
    events = Counter((e["name"], e["time"]) for s in trace for e in s["events"])
    at_time = defaultdict(list)
    for name, time in events:
        at_time[time].append(name)
    problems = []
    for event in truth_events:
        key = (event["name"], event["time_unix_nano"])
        if events[key] != 1:
            found = at_time.get(event["time_unix_nano"])
            problems.append(f"order {order_id}: {events[key]} span events {event['name']!r} at "
                            f"{fmt_ns(event['time_unix_nano'])} ({event['service']}, "
                            f"{event['kind']}), expected 1"
                            + (f"; span events at that time: {found}" if found else ""))
    return problems


# ---------------------------------------------------------------------------
# determinism and input forms
# ---------------------------------------------------------------------------

def test_second_run_produces_identical_trace_ids_and_span_bytes(clean_run, samples, bridge_bin,
                                                                tmp_path):
    again = backfill_to_receiver(bridge_bin, make_config(samples.dir, tmp_path), tmp_path)
    again.run.expect_exit(0)
    first = {order_of(s): s["trace_id"] for s in clean_run.spans}
    second = {order_of(s): s["trace_id"] for s in again.spans}
    changed = [f"order {o}: {first.get(o)} then {second.get(o)}"
               for o in sorted(set(first) | set(second)) if first.get(o) != second.get(o)]
    assert_no_problems(changed, "orders whose trace id changed between two runs")
    assert_same_spans(clean_run.spans, again.spans, "first run", "second run")


def test_gzipped_and_plain_rotated_files_give_identical_spans(archive_runs, samples):
    plain, gzipped = archive_runs["plain"], archive_runs["gzipped"]
    assert len({order_of(s) for s in plain.spans}) == len(truth_orders(samples)), \
        f"the backfill of the unpacked copy gave {len(plain.spans)} spans over " \
        f"{len({order_of(s) for s in plain.spans})} orders, truth has {len(truth_orders(samples))}"
    assert_same_spans(plain.spans, gzipped.spans, "unpacked copy", "gzipped copy")


def test_backfill_of_an_archive_copy_equals_backfill_of_the_configured_sources(archive_runs,
                                                                              clean_run):
    """Span ids come from the event's stable source key, not from where the file lies."""
    assert_same_spans(clean_run.spans, archive_runs["gzipped"].spans, "configured sources",
                      "archive copy given by PATH")


# ---------------------------------------------------------------------------
# bad input and counters
# ---------------------------------------------------------------------------

def test_malformed_lines_are_counted_and_the_backfill_still_succeeds(clean_run, samples):
    truth = samples.truth
    summary = clean_run.summary
    malformed = sum(truth["malformed"].values())
    noise = sum(truth["noise_records"].values())
    kinds = Counter(line["kind"] for line in truth["malformed_lines"])
    counted = summary["unmatched"] + sum(summary["rejected"].values())
    assert clean_run.run.returncode == 0
    problems = []
    if counted < malformed:
        problems.append(f"summary counts {summary['unmatched']} unmatched + {summary['rejected']} "
                        f"rejected = {counted}, truth has {malformed} malformed records {dict(kinds)}")
    # Every noise record and every non-empty malformed one matches no rule, or is rejected.
    if counted < noise + malformed - kinds.get("empty", 0):
        problems.append(f"summary counts {counted} unmatched/rejected, truth has {noise} noise + "
                        f"{malformed} malformed ({dict(kinds)}) records")
    if summary["cut_lines"] < kinds.get("too_long", 0):
        problems.append(f"cut_lines {summary['cut_lines']}, truth has {kinds.get('too_long', 0)} "
                        f"line(s) longer than max_line_bytes")
    if summary["invalid_bytes"] < kinds.get("invalid_bytes", 0):
        problems.append(f"invalid_bytes {summary['invalid_bytes']}, truth has "
                        f"{kinds.get('invalid_bytes', 0)} lines with invalid bytes")
    rejected_lines = clean_run.run.rejected_path.read_text(encoding="utf-8").splitlines() \
        if clean_run.run.rejected_path.exists() else []
    if len(rejected_lines) < malformed - kinds.get("empty", 0):
        problems.append(f"--rejected file has {len(rejected_lines)} lines, truth has {malformed} "
                        f"malformed records")
    fake = [span_label(s) for s in clean_run.spans if order_of(s) not in truth["orders"]]
    if fake:
        problems.append(f"malformed lines produced spans of orders that do not exist: {fake[:5]}")
    assert_no_problems(problems, "miscounted kinds of bad input")


def test_summary_counts_match_the_samples(clean_run, samples):
    truth, summary = samples.truth, clean_run.summary
    orders = truth_orders(samples)
    complete = sum(o["final"] for o in orders.values())
    files = [p for p in samples.dir.rglob("*") if p.is_file() and p.name != "truth.json"]
    empty = sum(1 for line in truth["malformed_lines"] if line["kind"] == "empty")
    expected = {
        "files": len(files),
        "lines": sum(truth["lines"].values()),
        "orders": len(orders),
        "orders_complete": complete,
        "orders_incomplete": len(orders) - complete,
        "spans": len(clean_run.spans),
        "exported_spans": len(clean_run.spans),
        "export_failures": 0,
    }
    got = {key: summary.get(key) for key in expected}
    wrong = {k: f"summary {got[k]}, expected {v}" for k, v in expected.items() if got[k] != v}
    # Every event record matches one rule; a line with a bad timestamp may count as matched
    # by the rule whose pattern it fits before it is rejected.
    matched = sum(summary["matched"].values())
    events = sum(truth["event_records"].values())
    bad_time = sum(1 for line in truth["malformed_lines"] if line["kind"] == "bad_timestamp")
    if not events <= matched <= events + bad_time:
        wrong["matched"] = (f"summary {matched} over {len(summary['matched'])} rules, truth has "
                            f"{events} event records (+{bad_time} with a bad timestamp)")
    records = summary["records"]
    total_records = sum(truth["records"].values())
    if not total_records - empty <= records <= total_records:
        wrong["records"] = f"summary {records}, truth {total_records} ({empty} empty)"
    on_disk = sum(p.stat().st_size for p in files)
    unpacked = sum(len(gzip.decompress(p.read_bytes())) if p.suffix == ".gz"
                   else p.stat().st_size for p in files)
    if summary["bytes"] not in (on_disk, unpacked):
        wrong["bytes"] = f"summary {summary['bytes']}, files hold {on_disk} ({unpacked} unpacked)"
    assert not wrong, f"summary differs from the samples: {wrong}\nsummary: {summary}"


# ---------------------------------------------------------------------------
# export: retries, refusals, file export
# ---------------------------------------------------------------------------

def test_retryable_503_with_retry_after_is_retried_until_every_span_arrives(
        clean_run, samples, bridge_bin, tmp_path):
    config = make_config(samples.dir, tmp_path, SMALL_BATCHES)
    export = backfill_to_receiver(bridge_bin, config, tmp_path,
                                  fail_first=2, fail_status=503, retry_after=1)
    export.run.expect_exit(0)
    statuses = [r["status"] for r in export.requests]
    assert statuses[:2] == [503, 503] and 200 in statuses, f"request statuses {statuses}"
    assert export.summary["export_retries"] >= 2, \
        f"export_retries {export.summary['export_retries']} after 2 refused requests"
    for refused in export.requests[:2]:
        later = [r for r in export.requests if r["status"] == 200
                 and r.get("sha256") == refused["sha256"]]
        assert later, f"a request refused with 503 was never sent again unchanged: {refused}"
        waited = later[0]["time"] - refused["time"]
        assert waited >= 0.9, f"retried after {waited:.2f}s, Retry-After said 1 s"
    assert_same_spans(clean_run.spans, export.spans, "clean run", "run with two 503s")


def test_non_retryable_400_exits_3_after_one_attempt_per_batch(clean_run, samples, bridge_bin,
                                                              tmp_path):
    config = make_config(samples.dir, tmp_path, SMALL_BATCHES)
    export = backfill_to_receiver(bridge_bin, config, tmp_path, always_status=400, timeout=60)
    export.run.expect_exit(3)
    requests = export.requests
    assert requests, "the bridge sent no request at all"
    assert all(r["spans"] <= SMALL_BATCHES["max_batch_spans"] for r in requests), \
        f"batches larger than max_batch_spans: {[r['spans'] for r in requests]}"
    bodies = Counter(r["sha256"] for r in requests)
    resent = {sha[:12]: n for sha, n in bodies.items() if n > 1}
    assert not resent, f"batches refused with 400 were sent again: {resent} " \
                       f"({len(requests)} requests in all)"
    tried = sum(r["spans"] for r in requests)
    assert tried == len(clean_run.spans), \
        f"{tried} spans tried in {len(requests)} requests, a clean run exports " \
        f"{len(clean_run.spans)}: every batch should be tried exactly once"
    summary = export.summary
    assert summary["export_failures"] > 0 and summary["exported_spans"] == 0, \
        f"export_failures {summary['export_failures']}, exported_spans {summary['exported_spans']}"
    assert not export.spans


def test_file_export_decodes_to_the_same_spans_as_the_http_export(clean_run, samples, bridge_bin,
                                                                 tmp_path):
    out = tmp_path / "traces.otlp.jsonl"
    run = run_backfill(bridge_bin, make_config(samples.dir, tmp_path), export=f"file:{out}")
    run.expect_exit(0)
    assert out.exists(), f"--export file:{out} wrote no file\n{run.describe()}"
    spans = load_file_export(out)
    assert_same_spans(clean_run.spans, spans, "HTTP export", "file export")
    key = lambda s: (s["raw"], s["service"], s["scope"], tuple(sorted(s["resource"].items())))  # noqa: E731
    assert sorted(map(key, spans)) == sorted(map(key, clean_run.spans)), \
        "same spans, but resource or scope differ between the file and the HTTP export"


def test_migrate_reports_a_current_store_and_a_store_a_newer_version_migrated_is_refused(
        samples, bridge_bin, tmp_path):
    def tb(*args):
        return subprocess.run([str(bridge_bin), *map(str, args)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)

    config = make_config(samples.dir, tmp_path)
    store = tmp_path / "state.sqlite"
    missing = tb("migrate", "--store", tmp_path / "nothing.sqlite")
    assert missing.returncode == 1 and "no state store at" in missing.stderr, missing
    assert not (tmp_path / "nothing.sqlite").exists(), "migrate must not create a store"
    run_backfill(bridge_bin, config).expect_exit(0)
    with sqlite3.connect(store) as db:
        applied = [r[0] for r in db.execute("SELECT identifier FROM grdb_migrations")]
    assert applied, "the backfill's store records no migration"

    current = tb("migrate", "--store", store)
    assert current.returncode == 0, current
    assert f"{len(applied)} migrations applied, 0 pending" in current.stdout, current.stdout
    dry = tb("migrate", "--dry-run", "--config", config, "--store", store)
    assert dry.returncode == 0, dry
    listed = [line.split()[1] for line in dry.stdout.splitlines() if line.startswith("  applied ")]
    assert sorted(listed) == sorted(applied), f"--dry-run lists {listed}, the store records {applied}"
    assert "  pending " not in dry.stdout, dry.stdout

    # A store a later version migrated: every command that opens it refuses it, naming the
    # migration, and leaves it as it was.
    with sqlite3.connect(store) as db:
        db.execute("INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-a-later-version')")
    for args in (["migrate", "--store", store], ["migrate", "--dry-run", "--store", store],
                 ["timeline", "--config", config, "--store", store]):
        refused = tb(*args)
        assert refused.returncode == 2, (args, refused)
        assert "migrated by a newer tracebridge" in refused.stderr, (args, refused.stderr)
        assert "v99-from-a-later-version" in refused.stderr, (args, refused.stderr)
    with sqlite3.connect(store) as db:
        after = [r[0] for r in db.execute("SELECT identifier FROM grdb_migrations")]
    assert sorted(after) == sorted(applied + ["v99-from-a-later-version"]), after


def test_usage_errors_exit_2_as_the_help_says_and_help_and_version_exit_0(bridge_bin):
    """ArgumentParser alone exits 64 on a usage error; `--help` and the docs promise 2, which
    the systemd unit does not restart on (RestartPreventExitStatus=2)."""
    def tb(*args):
        return subprocess.run([str(bridge_bin), *args], capture_output=True, text=True,
                              timeout=30)
    for args, said in ((["run", "--no-such-option"], "Unknown option '--no-such-option'"),
                       (["backfill", "--log-level", "loud"], "'loud' is not a log level"),
                       (["no-such-command"], "Unexpected argument 'no-such-command'"),
                       (["timeline", "--drain-timeout", "5"], "Unknown option")):
        done = tb(*args)
        assert done.returncode == 2, (args, done.returncode, done.stderr)
        assert said in done.stderr, (args, done.stderr)
        assert "Usage: tracebridge" in done.stderr, (args, done.stderr)
    for args in (["--help"], ["run", "--help"], ["help", "backfill"], ["--version"]):
        done = tb(*args)
        assert done.returncode == 0, (args, done.returncode, done.stderr)
        assert done.stdout.strip(), (args, "printed nothing")
    # A valid level still parses (the command then fails on its missing configuration, 2).
    done = tb("rules", "check", "--log-level", "debug", "--config", "/nonexistent/tb.yaml")
    assert done.returncode == 2 and "cannot read the configuration" in done.stderr, done
