#!/usr/bin/env python3
"""The hand-written Python baseline for ``scripts/bench``.

What a team would write by hand to parse the same logs with the same rules as
TraceBridge, without TraceBridge: read each file (decoded with the source's charset,
invalid bytes replaced), join multiline records, try the source's rules in order with
Python ``re`` (first match wins), parse the timestamp of a matched record to UTC epoch
nanoseconds (``zoneinfo`` for local times), build one ``dict`` event per match and count
matches per rule. No correlation, no spans, no output but the counts.

The rules come from the same two places the bridge reads:

* ``--patterns FILE`` (or ``--bridge BIN``, which runs
  ``BIN rules check -c CONFIG --print-patterns``): each pattern rule's regex with every
  ``%{NAME}`` expanded, so no pattern is re-typed here. PCRE's ``(?<name>`` becomes
  Python's ``(?P<name>``.
* ``--config``: sources (file names, encoding, zone, multiline start), JSON rules
  (capture -> JSON pointer), logfmt rules (capture -> key), ``where`` clauses,
  timestamp formats and the event templates.

Prints one JSON object: lines, records, matched (per rule), rejected (per rule and
reason), unmatched, events, seconds.

Usage:
  python3 scripts/bench_baseline.py -c examples/tracebridge.yaml --patterns patterns.json corpus/
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import yaml

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MICRO = timedelta(microseconds=1)
TEMPLATE_REF = re.compile(r"\$\{(\w+)\}")
NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def py_regex(pcre: str) -> re.Pattern:
    """Compiles a PCRE pattern with Python `re` (named groups rewritten)."""
    return re.compile(NAMED_GROUP.sub("(?P<", pcre))


# ---------------------------------------------------------------------------- time --

def java_to_strptime(fmt: str) -> str:
    """'dd.MM.yyyy HH:mm:ss.SSS' -> '%d.%m.%Y %H:%M:%S.%f' (the subset the config uses)."""
    out, i = [], 0
    table = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S", "MMM": "%b"}
    while i < len(fmt):
        c = fmt[i]
        run = 1
        while i + run < len(fmt) and fmt[i + run] == c:
            run += 1
        token = fmt[i:i + run]
        if c == "S":
            out.append("%f")
        elif c in "XxZ":
            out.append("%z")
        elif token in table:
            out.append(table[token])
        elif c.isalpha():
            raise ValueError(f"timestamp format {fmt!r}: unsupported field {token!r}")
        else:
            out.append(token.replace("%", "%%"))
        i += run
    return "".join(out)


def make_time_parser(fmt: str, zone):
    """Returns text -> UTC epoch ns (or None) for one rule's timestamp format and zone."""
    if fmt in ("iso8601", "iso-8601"):
        def parse_iso(text: str):
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                return None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=zone)
            return (dt - EPOCH) // ONE_MICRO * 1000
        return parse_iso
    if fmt == "epoch_seconds":
        return lambda text: int(float(text) * 1e9)
    if fmt == "epoch_millis":
        return lambda text: int(float(text) * 1e6)
    pattern = java_to_strptime(fmt)

    def parse_pattern(text: str):
        try:
            dt = datetime.strptime(text, pattern)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone)
        return (dt - EPOCH) // ONE_MICRO * 1000
    return parse_pattern


def zone_of(name):
    if name is None or name.upper() == "UTC":
        return timezone.utc
    return ZoneInfo(name)


# ------------------------------------------------------------------- structured --

def json_pointer(obj, pointer: str):
    """RFC 6901 lookup; the value as a string (like the bridge), or None."""
    cur = obj
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict) and token in cur:
            cur = cur[token]
        elif isinstance(cur, list) and token.isdigit() and int(token) < len(cur):
            cur = cur[int(token)]
        else:
            return None
    if cur is None:
        return None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, (str, int, float)):
        return str(cur)
    return json.dumps(cur, sort_keys=True, separators=(",", ":"))


LOGFMT_PAIR = re.compile(r'([^\s=]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?')


def parse_logfmt(line: str) -> dict:
    """key=value key2="quoted \\"value\\"" -> dict; a bare key has an empty value."""
    pairs = {}
    for key, value in LOGFMT_PAIR.findall(line):
        if value.startswith('"'):
            value = value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:]
            if "\\" in value:
                value = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), value)
        pairs[key] = value
    return pairs


# ------------------------------------------------------------------------ rules --

class Rule:
    """One rule of one source, ready to try on a record."""

    def __init__(self, spec: dict, pattern: str | None, source_zone):
        self.name = spec["name"]
        self.kind = "json" if "json" in spec else "logfmt" if "logfmt" in spec else "pattern"
        self.regex = py_regex(pattern) if self.kind == "pattern" else None
        self.fields = spec.get("json") or spec.get("logfmt") or {}
        self.where = [(k, py_regex(v)) for k, v in (spec.get("where") or {}).items()]
        ts = spec.get("timestamp") or {}
        self.ts_field = ts.get("field", "ts")
        zone = zone_of(ts["timezone"]) if "timezone" in ts else source_zone
        self.parse_time = make_time_parser(ts.get("format", "iso8601"), zone)
        self.event = spec.get("event")
        self.link = spec.get("link")

    def match(self, record: str, cache: dict):
        """The captures (dict) when the rule matches `record`, else None."""
        if self.kind == "pattern":
            m = self.regex.match(record)
            return m.groupdict() if m else None
        if self.kind == "json":
            if "json" not in cache:
                try:
                    cache["json"] = json.loads(record) if record.lstrip(" \t").startswith("{") else None
                except ValueError:
                    cache["json"] = None
            obj = cache["json"]
            if obj is None:
                return None
            values = {}
            for capture, pointer in self.fields.items():
                v = json_pointer(obj, pointer)
                if v is None:
                    return None
                values[capture] = v
        else:
            if "logfmt" not in cache:
                cache["logfmt"] = parse_logfmt(record)
            pairs = cache["logfmt"]
            values = {}
            for capture, key in self.fields.items():
                if key not in pairs:
                    return None
                values[capture] = pairs[key]
        for capture, regex in self.where:
            m = regex.search(values.get(capture) or "")
            if not m:
                return None
            values.update({k: v for k, v in m.groupdict().items() if v is not None})
        return values


def render(template, values: dict):
    """'${order}' -> the capture; None when a referenced capture is missing or empty."""
    if template is None:
        return None
    template = str(template)
    missing = False

    def sub(m):
        nonlocal missing
        v = values.get(m.group(1))
        if not v:
            missing = True
            return ""
        return v
    out = TEMPLATE_REF.sub(sub, template)
    return None if missing or not out else out


def build_event(rule: Rule, values: dict, service: str, ts_ns: int):
    """The event dict of a match, or (None, reason) when it cannot be one."""
    link = None
    if rule.link:
        key, order = render(rule.link.get("key"), values), render(rule.link.get("order_id"), values)
        if key is None or order is None:
            return None, "missing_order_id"
        link = {"kind": rule.link.get("kind"), "key": key, "order_id": order}
    e = rule.event
    if e is None:
        return {"order_id": link["order_id"], "service": service, "kind": "file_link", "time_unix_nano": ts_ns,
                "link": link, "rule": rule.name}, None
    if "order_id" in e:
        order = render(e["order_id"], values)
        if order is None:
            return None, "missing_order_id"
        key = {"order_id": order}
    elif "alias" in e:
        alias_key = render(e["alias"].get("key"), values)
        if alias_key is None:
            return None, "missing_order_id"
        key = {"alias": (e["alias"].get("kind"), alias_key)}
    elif link:
        key = {"order_id": link["order_id"]}
    else:
        return None, "missing_order_id"
    event = dict(key, service=service, kind=e.get("kind"), time_unix_nano=ts_ns, rule=rule.name,
                 name=render(e.get("name"), values) or rule.name)
    if "status" in e:
        status = render(e["status"], values)
        if status is None:
            return None, "missing_status"
        event["status"] = status
    for field in ("step", "user_id"):
        if field in e:
            v = render(e[field], values)
            if v is not None:
                event[field] = v
    attributes = {}
    for k, t in (e.get("attributes") or {}).items():
        v = render(t, values)
        if v is not None:
            attributes[k] = v
    event["attributes"] = attributes
    if link:
        event["link"] = link
    return event, None


# ----------------------------------------------------------------------- files --

def source_for(path: str, sources: list[dict]):
    """The source whose paths claim the file's name (rotated siblings included)."""
    name = os.path.basename(path)
    for s in sources:
        for p in s.get("paths") or []:
            base = os.path.basename(p)
            if name == base or name.startswith(base + "."):
                return s
    return None


def records(path: str, encoding: str, start):
    """Yields (records, physical lines) of a file; continuation lines join the record before."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding=encoding, errors="replace", newline="\n") as f:
        pending = None
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if start is None:
                yield line
                continue
            if start.match(line) or pending is None:
                if pending is not None:
                    yield pending
                pending = line
            else:
                pending += "\n" + line
        if pending is not None:
            yield pending


def expand_paths(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, files in os.walk(p):
                out.extend(os.path.join(root, f) for f in sorted(files))
        else:
            out.append(p)
    return sorted(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Hand-written Python baseline: parse logs with the bridge's rules.")
    parser.add_argument("-c", "--config", required=True, help="the TraceBridge YAML configuration")
    parser.add_argument("--patterns", help="JSON from `tracebridge rules check --print-patterns`")
    parser.add_argument("--bridge", help="or: the tracebridge binary to ask for the patterns")
    parser.add_argument("paths", nargs="+", help="log files or directories")
    args = parser.parse_args(argv)

    began = time.monotonic()
    with open(args.config, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if args.patterns:
        with open(args.patterns, encoding="utf-8") as f:
            printed = json.load(f)
    elif args.bridge:
        printed = json.loads(subprocess.run([args.bridge, "rules", "check", "-c", args.config, "--print-patterns"],
                                            check=True, capture_output=True, text=True).stdout)
    else:
        parser.error("give --patterns FILE or --bridge BIN")
    pattern_of = {e["rule"]: e.get("pattern") for entries in printed.values() for e in entries}

    sources = config.get("sources") or []
    rules_of: dict[str, list[Rule]] = {}
    for s in sources:
        zone = zone_of(s.get("timezone"))
        rules_of[s["name"]] = [
            Rule(r, pattern_of.get(r["name"]), zone) for r in config.get("rules") or []
            if s["name"] in (r.get("sources") or [r.get("source")])]

    lines = records_n = unmatched = events = 0
    matched = {r["name"]: 0 for r in config.get("rules") or []}
    rejected: dict[str, int] = {}
    skipped = []
    for path in expand_paths(args.paths):
        source = source_for(path, sources)
        if source is None:
            skipped.append(path)
            continue
        rules = rules_of[source["name"]]
        service = source.get("service", source["name"])
        ml = (source.get("multiline") or {}).get("start")
        start = py_regex(ml) if ml else None
        for record in records(path, source.get("encoding", "utf-8"), start):
            records_n += 1
            lines += record.count("\n") + 1
            cache: dict = {}
            for rule in rules:
                values = rule.match(record, cache)
                if values is None:
                    continue
                text = values.get(rule.ts_field)
                ts_ns = rule.parse_time(text) if text else None
                if ts_ns is None:
                    key = f"{rule.name}:{'missing_timestamp' if not text else 'bad_timestamp'}"
                    rejected[key] = rejected.get(key, 0) + 1
                    break
                event, reason = build_event(rule, values, service, ts_ns)
                if event is None:
                    key = f"{rule.name}:{reason}"
                    rejected[key] = rejected.get(key, 0) + 1
                    break
                matched[rule.name] += 1
                events += 1
                break
            else:
                unmatched += 1
    print(json.dumps({
        "lines": lines, "records": records_n, "matched_total": sum(matched.values()), "matched": matched,
        "rejected": rejected, "unmatched": unmatched, "events": events, "skipped_files": skipped,
        "seconds": round(time.monotonic() - began, 3)}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
