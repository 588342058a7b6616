"""Runner for ksqlDB's query-validation-test (QTT) JSON files against the real engine and broker.

Each case gets a fresh engine with its own topic prefix (so names like `test_topic` never clash
across cases or runs), its inputs are produced to the real broker, the engine's persistent
queries run until they have consumed everything, and the output topics are read back and
compared with the expected records (count, order, key, value, timestamp when given). A case
that needs something this engine does not implement is *skipped* with the reason; it is never
counted as passed.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from services.common.errors import code_of
from services.common.kafka import client_config, make_admin
from services.ksql_conformance.raw_produce import RawProducer
from services.ksql_conformance.schemas import CaseSchemas, encode, register_topic
from services.ksql_conformance.udfs import register_test_functions
from services.ksql_server.engine import Engine
from services.ksql_server.engine_api import KsqlStatementError
from services.ksql_server.errors import KsqlServiceError, UnsupportedError
from services.ksql_server.formats import make_deserializer, make_serializer
from services.ksql_server.formats.base import coercer
from services.ksql_server.formats.protobuf import decode_record
from services.ksql_server.formats.registry import HEADER_SIZE, uses_registry
from services.ksql_server.formats.windowed import WindowInfo, frame, split_windowed
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ParseError
from services.ksql_server.rest.streams import final_message

WRAPPED_KEYS = ("PROTOBUF", "PROTOBUF_NOSR")
"""Key formats that keep a single key column in a message (QTT writes such keys as objects)."""
_KEEP_FOREVER = {"retention.ms": "-1"}


def _coerce(typ: Any, value: Any) -> Any:
    return None if value is None else coercer(typ)(value)


# ----------------------------------------------------------------------------- loading


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments outside JSON strings."""
    out: list[str] = []
    i, n, in_str = 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i)
            i = n if j < 0 else j + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


@dataclass
class Case:
    file: str
    name: str
    spec: dict[str, Any]

    @property
    def statements(self) -> list[str]:
        return list(self.spec.get("statements", []))


@dataclass
class Result:
    case: Case
    status: str  # passed | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    feature: str = ""
    """For a skipped case: the feature it needs (`Unsupported.feature`), what skips are
    counted by."""


def as_script(texts: list[str]) -> list[str]:
    """ksqlDB's QTT runs a case's statements as one script (joined by newlines), so the line
    numbers of its errors (`Line: 2, Col: 13: …`, `line 2:74: Syntax Error`) count in that
    script. Each statement is sent with the blank lines that put it on its script line; the
    server counts lines in a request the same way and strips them from the statement."""
    out: list[str] = []
    before = 0
    for text in texts:
        out.append("\n" * before + text)
        before += text.count("\n") + 1
    return out


def load_cases(path: Path) -> list[Case]:
    doc = json.loads(strip_comments(path.read_text()))
    cases: list[Case] = []
    for test in doc.get("tests", []):
        formats = test.get("format") or [None]
        configs = test.get("config") or [None]
        for fmt in formats:
            for cfg in configs:
                text = json.dumps(test)
                name = test.get("name", "?")
                if fmt is not None:
                    text = text.replace("{FORMAT}", fmt)
                    name += f" - {fmt}"
                if cfg is not None:
                    text = text.replace("{CONFIG}", str(cfg))
                    name += f" - {cfg}"
                spec = json.loads(text)
                spec.pop("format", None)
                spec.pop("config", None)
                cases.append(Case(path.name, name, spec))
    return cases


def collect_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.exists():
            files.append(p)
    return files


# ----------------------------------------------------------------------------- comparison


class DecimalValue:
    """A DECIMAL read from a sink, compared as ksqlDB's test runner compares it: with a
    string expectation as BigDecimals (value and scale: "1.0" is not 1.00), with a number
    expectation (JSON writes decimals as numbers) by value."""

    __slots__ = ("value",)

    def __init__(self, value: Decimal) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DecimalValue):
            return self.value == other.value
        if isinstance(other, str):
            try:
                want = Decimal(other)
            except ArithmeticError:
                return False
            return want == self.value and want.as_tuple().exponent == self.value.as_tuple().exponent
        if isinstance(other, int | float) and not isinstance(other, bool):
            got, number = float(self.value), float(other)
            return got == number or abs(got - number) < 1e-6  # a JSON double read as a decimal
        return False

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{self.value:f}"


def normalize(value: Any) -> Any:
    """JSON-ish value for comparison: numbers as float (a DECIMAL as `DecimalValue`), field
    names upper-case."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return DecimalValue(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k).upper(): normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, bytes):  # BYTES as ksqlDB's test files write them
        return base64.b64encode(value).decode("ascii")
    return value


def matches(actual: Any, expected: Any) -> bool:
    """Whether a sink record's key or value matches the case's, as ksqlDB's test runner
    (ExpectedRecordComparator) decides: an object by field count and then each expected field
    (a field it lacks reads as null), a double within 1e-6, a DECIMAL as `DecimalValue`."""
    return _match(normalize(actual), normalize(expected))


def _match(a: Any, e: Any) -> bool:
    if isinstance(e, dict):
        return (
            isinstance(a, dict)
            and len(a) == len(e)
            and all(_match(a.get(k), v) for k, v in e.items())
        )
    if isinstance(e, list):
        return (
            isinstance(a, list)
            and len(a) == len(e)
            and all(_match(x, y) for x, y in zip(a, e, strict=True))
        )
    if isinstance(e, float) and isinstance(a, float):
        return a == e or abs(a - e) < 1e-6
    return bool(a == e)


class Unsupported(KsqlServiceError):
    """Raised inside the runner for a case feature the engine does not implement."""

    default_code = "unsupported"

    def __init__(self, feature: str, detail: str = "") -> None:
        super().__init__(f"{feature}: {detail}" if detail else feature)
        self.feature = feature
        """What the summary counts skipped cases by (`syntax`, `windowed keys`, ...)."""


# ----------------------------------------------------------------------------- runner


class Runner:
    """Runs cases concurrently; Kafka clients are shared where librdkafka allows it."""

    def __init__(
        self, bootstrap: str, registry_url: str | None, workers: int = 6, timeout: float = 30.0
    ) -> None:
        register_test_functions()  # ksqlDB's test-only BAD_UDF, in this process only
        self.bootstrap = bootstrap
        self.registry_url = registry_url
        self.workers = workers
        self.timeout = timeout
        self.admin = make_admin(bootstrap)
        self.producer = Producer(
            {**client_config(bootstrap), "linger.ms": 2, "enable.idempotence": True}
        )
        self._local = threading.local()
        self._registry_ok: bool | None = None
        self._registry_lock = threading.Lock()
        self._registry: Any = None

    def registry(self) -> Any:
        """The Schema Registry client, or None when it does not answer (checked once; the
        lock keeps concurrent cases from seeing a half-done check)."""
        with self._registry_lock:
            if self._registry_ok is None:
                ok = False
                if self.registry_url:
                    try:
                        import httpx

                        from services.common.avro.schemas import registry_client
                        from services.common.http.clients import httpx_options

                        httpx.get(
                            self.registry_url + "/subjects",
                            timeout=2.0,
                            **httpx_options("schema-registry"),
                        ).raise_for_status()
                        self._registry = registry_client(self.registry_url)
                        ok = True
                    except Exception:
                        ok = False
                self._registry_ok = ok
        return self._registry if self._registry_ok else None

    def run(
        self, cases: list[Case], progress: Callable[[Result], None] | None = None
    ) -> list[Result]:
        results: list[Result | None] = [None] * len(cases)

        def work(i: int) -> None:
            res = self.run_case(cases[i])
            results[i] = res
            if progress is not None:
                progress(res)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(work, range(len(cases))))
        self.producer.flush(10)
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ one case
    def run_case(self, case: Case) -> Result:
        start = time.monotonic()
        prefix = f"qtt_{uuid.uuid4().hex[:10]}_"
        engine: Engine | None = None
        feature = ""
        try:
            engine = self._engine(case, prefix)
            status, reason = self._run(case, engine, prefix)
        except Unsupported as exc:
            status, reason, feature = "skipped", str(exc), exc.feature
        except Exception as exc:
            status, reason = "failed", f"runner error: {type(exc).__name__}: {exc}"
        finally:
            if engine is not None:
                engine.close()
            text = json.dumps(case.spec).upper()
            self._cleanup(prefix, any(f in text for f in ("AVRO", "PROTOBUF", "JSON_SR", "SCHEMA")))
        return Result(case, status, reason, time.monotonic() - start, feature)

    def _engine(self, case: Case, prefix: str) -> Engine:
        spec = case.spec
        props = {"auto.offset.reset": "earliest"}
        for k, v in (spec.get("properties") or {}).items():
            props[k] = v
        engine = Engine(
            self.bootstrap,
            self.registry_url if self.registry() else None,
            service_id=prefix,
            properties=props,
            topic_prefix=prefix,
            command_topic=False,
            auto_create_source_topics=True,
            fast=True,
            processing_log=False,
        )
        # the sinks, repartition and changelog topics the case's statements create hold 1970
        # records too: kept like the inputs, or the broker's retention check may delete them
        engine.ctx.topic_defaults = dict(_KEEP_FOREVER)
        return engine

    def _run(self, case: Case, engine: Engine, prefix: str) -> tuple[str, str]:
        spec = case.spec
        if "responses" in spec or "expectedError" in spec:
            return self._run_rest(case, engine, prefix)
        self._create_topics(spec, prefix)
        expected_exc = spec.get("expectedException")
        for text in as_script(self._statements(case)):
            try:
                engine.execute(text)
            except KsqlStatementError as exc:
                cause = exc.__cause__
                if isinstance(cause, UnsupportedError):
                    raise Unsupported(str(cause)) from exc
                if expected_exc:
                    want = expected_exc.get("message", "")
                    if want in exc.message:
                        return "passed", ""
                    if isinstance(cause, ParseError):
                        raise Unsupported("syntax", exc.message[:120]) from exc
                    return "failed", f"expected error {want[:200]!r}, got {exc.message[:300]!r}"
                if isinstance(cause, ParseError):
                    raise Unsupported("syntax", exc.message[:120]) from exc
                return "failed", f"statement failed: {text[:120]} -> {exc.message[:300]}"
        if expected_exc:
            want = expected_exc.get("message", "")
            if not spec.get("inputs"):
                return "failed", f"expected error {want[:200]!r}, none raised"
        shift = self._produce_inputs(spec, engine, prefix)
        if not engine.wait_until_caught_up(self.timeout):
            return "failed", f"queries did not catch up within {self.timeout:.0f}s"
        failed = [q for q in engine.queries.values() if q.error]
        if failed and expected_exc:  # a query stopped while processing, as the case expects
            cause = expected_exc.get("causeMessage") or expected_exc.get("message", "")
            if cause in (failed[0].error or ""):
                return "passed", ""
        if failed:
            # an error ksqlDB raises while processing (a StreamsException) ends the query
            if expected_exc and expected_exc.get("message", "") in (failed[0].error or ""):
                return "passed", ""
            return "failed", f"query {failed[0].query_id} failed: {failed[0].error}"
        if expected_exc:
            return (
                "failed",
                f"expected error {expected_exc.get('message', '')[:200]!r}, none raised",
            )
        problem = self._check_outputs(spec, engine, prefix, shift)
        if problem:
            return "failed", problem
        problem = self._check_post(spec, engine)
        if problem:
            return "failed", problem
        return "passed", ""

    # ------------------------------------------------------------------ REST cases
    def _run_rest(self, case: Case, engine: Engine, prefix: str) -> tuple[str, str]:
        """rest-query-validation-tests: statements run in order (inputs are produced before the
        first query); `/ksql` entities are compared by their fields given, queries by header
        schema, rows and how they ended; `expectedError` must match the failing statement."""
        import asyncio

        spec = case.spec
        self._create_topics(spec, prefix)
        responses = list(spec.get("responses", []))
        expected_error = spec.get("expectedError")
        produced = False
        shift = 0
        got: list[dict[str, Any]] = []
        for text in self._statements(case):
            is_query = text.lstrip().upper().startswith("SELECT")
            try:
                if is_query:
                    if not produced:
                        shift = self._produce_inputs(spec, engine, prefix)
                        produced = True
                        if not engine.wait_until_caught_up(self.timeout):
                            return "failed", "queries did not catch up"
                    got.append(
                        {"query": asyncio.run(self._collect(engine, text, responses, len(got)))}
                    )
                else:
                    got += [{"admin": e} for e in engine.execute(text)]
            except KsqlStatementError as exc:
                cause = exc.__cause__
                if isinstance(cause, UnsupportedError):
                    raise Unsupported(str(cause)) from exc
                if expected_error and expected_error.get("message", "") in exc.message:
                    return "passed", ""
                if isinstance(cause, ParseError) and not expected_error:
                    raise Unsupported("syntax", exc.message[:120]) from exc
                if expected_error:
                    return "failed", (
                        f"expected error {expected_error.get('message', '')[:200]!r}"
                        f", got {exc.message[:300]!r}"
                    )
                return "failed", f"statement failed: {text[:120]} -> {exc.message[:300]}"
        if expected_error:
            return "failed", f"expected error {expected_error.get('message', '')!r}, none raised"
        if not produced:
            shift = self._produce_inputs(spec, engine, prefix)
            if not engine.wait_until_caught_up(self.timeout):
                return "failed", "queries did not catch up"
        problem = self._compare_responses(responses, got)
        if problem:
            return "failed", problem
        problem = self._check_outputs(spec, engine, prefix, shift)
        return ("failed", problem) if problem else ("passed", "")

    async def _collect(
        self, engine: Engine, text: str, responses: list[dict[str, Any]], index: int
    ) -> list[dict[str, Any]]:
        import asyncio

        expected = responses[index].get("query", []) if index < len(responses) else []
        want_rows = sum(1 for r in expected if "row" in r)
        query = await engine.start_query(text)
        out: list[dict[str, Any]] = [{"header": {"schema": query.schema}}]
        rows = query.rows.__aiter__()
        ended = False
        try:
            while True:
                timeout = 10.0 if len([r for r in out if "row" in r]) < want_rows else 1.0
                try:
                    row = await asyncio.wait_for(rows.__anext__(), timeout)
                except StopAsyncIteration:
                    ended = True
                    break
                except TimeoutError:
                    break
                out.append({"row": {"columns": row}})
        finally:
            await query.close()
        if ended:
            out.append({"finalMessage": final_message(query)})
        return out

    def _compare_responses(
        self, expected: list[dict[str, Any]], got: list[dict[str, Any]]
    ) -> str | None:
        if len(expected) != len(got):
            return f"expected {len(expected)} responses, got {len(got)}"
        for i, (want, have) in enumerate(zip(expected, got, strict=True)):
            if "admin" in want:
                if "admin" not in have:
                    return f"response {i}: expected an entity, got a query"
                for k, v in want["admin"].items():
                    if have["admin"].get(k) != v:
                        return f"response {i}: {k} {have['admin'].get(k)!r} != {v!r}"
                continue
            rows_w = [r for r in want.get("query", []) if "finalMessage" not in r]
            rows_h = [r for r in have.get("query", []) if "finalMessage" not in r]
            if len(rows_w) != len(rows_h):
                return f"response {i}: expected {len(rows_w) - 1} rows, got {rows_h[1:6]}"
            if _pull_completed(have) and _row_set(rows_w) == _row_set(rows_h):
                continue  # a pull query over a table answers in its store's order
            for w, h in zip(rows_w, rows_h, strict=True):
                if "header" in w:
                    if w["header"].get("schema") != h.get("header", {}).get("schema"):
                        return f"response {i}: header {h} != {w}"
                elif normalize(w["row"]["columns"]) != normalize(h["row"]["columns"]):
                    return f"response {i}: row {h['row']['columns']} != {w['row']['columns']}"
            final_w = [r["finalMessage"] for r in want.get("query", []) if "finalMessage" in r]
            final_h = [r["finalMessage"] for r in have.get("query", []) if "finalMessage" in r]
            if final_w and final_w != final_h:
                return f"response {i}: final message {final_h} != {final_w}"
        return None

    # ------------------------------------------------------------------ topics & inputs
    def _statements(self, case: Case) -> list[str]:
        """The case's statements, its schema ids mapped to the ones the registry gave."""
        declared: CaseSchemas = self._local.__dict__.get("schemas") or CaseSchemas()
        prefix = self._local.__dict__.get("prefix", "")
        return [declared.rewrite(text, prefix) for text in case.statements]

    def _create_topics(self, spec: dict[str, Any], prefix: str) -> None:
        declared = CaseSchemas()
        self._local.__dict__["schemas"] = declared
        self._local.__dict__["prefix"] = prefix
        wanted: dict[str, int] = {}
        ordinal = [0]
        declared_names = []
        for t in spec.get("topics", []) or []:
            declared_names.append(t["name"])
            if t.get("partitions"):  # else a statement's PARTITIONS, as ksqlDB's runner merges
                wanted[t["name"]] = int(t["partitions"])
            if t.get("valueSchema") is not None or t.get("keySchema") is not None:
                if self.registry() is None:
                    raise Unsupported("Schema Registry not reachable")
                register_topic(self.registry(), t, prefix, declared, ordinal)
        for text in spec.get("statements", []):
            topic = re.search(r"kafka_topic\s*=\s*'([^']+)'", text, re.IGNORECASE)
            parts = re.search(r"partitions\s*=\s*(\d+)", text, re.IGNORECASE)
            if topic and parts and not text.upper().lstrip().startswith("INSERT"):
                wanted.setdefault(topic.group(1), int(parts.group(1)))
        for name in [*declared_names, *(inp["topic"] for inp in spec.get("inputs", []))]:
            wanted.setdefault(name, 1)
        if not wanted:
            return
        futures = self.admin.create_topics(
            [
                # Cases date their records near 1970: without retention.ms=-1 the broker's
                # periodic retention check could delete inputs before the query reads them.
                NewTopic(prefix + n, num_partitions=p, replication_factor=1, config=_KEEP_FOREVER)
                for n, p in wanted.items()
            ],
            operation_timeout=15,
        )
        for fut in futures.values():
            try:
                fut.result(20)
            except Exception as exc:
                if code_of(exc) != "kafka_topic_already_exists":
                    raise

    def _source_for(self, engine: Engine, topic: str) -> DataSource | None:
        matches = engine.metastore.by_topic(topic)
        if not matches:
            return None
        for m in matches:
            if m.name == topic.upper() or m.name == topic:
                return m
        return matches[0]

    def _produce_inputs(self, spec: dict[str, Any], engine: Engine, prefix: str) -> int:
        """Produce the case's inputs; returns the timestamp shift applied (see below)."""
        inputs = spec.get("inputs", [])
        # librdkafka treats timestamp 0 as "now", so records stamped 0 (QTT's default) cannot be
        # produced as such: every input is shifted by +1 ms and outputs compared shifted back.
        # Only sound when no expression sees the record time, so other such cases are skipped.
        shift = 1 if any(int(i.get("timestamp", 0)) == 0 for i in inputs) else 0
        raw: RawProducer | None = None
        if shift and re.search(
            r"ROWTIME|TIMESTAMP\s*=|WINDOW", " ".join(spec.get("statements", [])), re.IGNORECASE
        ):  # the time matters: send the records stamped 0 as they are (raw_produce.py)
            shift = 0
            raw = RawProducer(self.bootstrap)
        serdes: dict[str, tuple[Any, Any, DataSource | None]] = {}
        registry = engine.ctx.registry_or_none() if self.registry() else None
        # INSERT INTO … SELECT: two queries write one sink, in input order for the test driver;
        # here they run side by side, so each run of inputs to one topic is caught up first
        # a join meets its inputs in the order the test driver pipes them: the same
        in_order = any(
            re.match(r"\s*INSERT\s+INTO\b.*\bSELECT\b", t, re.IGNORECASE | re.DOTALL)
            or re.search(r"\bJOIN\b", t, re.IGNORECASE)
            for t in spec.get("statements", [])
        )
        previous = None
        for inp in spec.get("inputs", []):
            topic = inp["topic"]
            if in_order and previous is not None and topic != previous:
                self.producer.flush(20)
                engine.wait_until_caught_up(self.timeout)
            previous = topic
            declared = self._local.__dict__.get("schemas") or CaseSchemas()
            by_topic = declared.by_topic
            if topic not in serdes:
                src = self._source_for(engine, topic)
                kser = vser = None
                if src is not None:
                    sr = uses_registry(src.key_format.name) or uses_registry(src.value_format.name)
                    if sr and registry is None:
                        raise Unsupported("Schema Registry not reachable")
                    if src.key_columns and (prefix + topic, "key") not in by_topic:
                        kser = make_serializer(
                            src.key_format, src.key_columns, prefix + topic, True, registry
                        )
                    if (
                        src.value_format.name not in ("JSON", "DELIMITED")
                        and (prefix + topic, "value") not in by_topic
                    ):
                        vser = make_serializer(
                            src.value_format, src.value_columns, prefix + topic, False, registry
                        )
                serdes[topic] = (kser, vser, src)
            kser, vser, src = serdes[topic]
            key: bytes | None
            value: bytes | None
            if (prefix + topic, "key") in by_topic and inp.get("key") is not None:
                key = encode(
                    inp.get("key"),
                    by_topic[(prefix + topic, "key")],
                    src.key_format.schema_name if src is not None else None,
                )
            else:
                key = self._encode_key(inp.get("key"), kser, src)
            if (prefix + topic, "value") in by_topic and inp.get("value") is not None:
                value = encode(
                    inp.get("value"),
                    by_topic[(prefix + topic, "value")],
                    src.value_format.schema_name if src is not None else None,
                )
            else:
                value = self._encode_value(inp.get("value"), vser, src)
            ts = int(inp.get("timestamp", 0)) + shift
            headers = inp.get("headers")
            if headers:
                raise Unsupported("record headers")
            if "window" in inp:
                key = _frame_input_key(key, inp["window"], src)
            if raw is not None:
                parts = self._partitions(prefix + topic)
                raw.produce(prefix + topic, raw.partition_for(key, parts), key, value, ts)
            else:
                self.producer.produce(prefix + topic, value, key, timestamp=ts)
        self.producer.flush(20)
        if raw is not None:
            raw.close()
        return shift

    def _partitions(self, topic: str) -> int:
        meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
        return len(meta.partitions) if meta is not None and meta.partitions else 1

    @staticmethod
    def _encode_key(key: Any, kser: Any, src: DataSource | None) -> bytes | None:
        if key is None:
            return None
        if kser is None or src is None:
            return key.encode() if isinstance(key, str) else json.dumps(key).encode()
        fmt = src.key_format.name
        if fmt == "JSON":
            return json.dumps(key).encode()
        if fmt == "DELIMITED":
            return str(key).encode() if not isinstance(key, bool) else str(key).lower().encode()
        cols = src.key_columns
        if isinstance(key, dict) and (len(cols) > 1 or fmt in WRAPPED_KEYS):
            upper = {str(k).upper(): v for k, v in key.items()}
            return kser(  # type: ignore[no-any-return]
                [_coerce(t, key.get(n, upper.get(n.upper()))) for n, t in cols]
            )
        return kser([coercer(cols[0][1])(key)])  # type: ignore[no-any-return]

    @staticmethod
    def _encode_value(value: Any, vser: Any, src: DataSource | None) -> bytes | None:
        if value is None:
            return None
        if vser is not None and src is not None:
            cols = src.value_columns
            if src.value_format.name == "KAFKA" or (
                src.value_format.wrap_single is False and len(cols) == 1
            ):
                return vser([coercer(cols[0][1])(value)])  # type: ignore[no-any-return]
            if not isinstance(value, dict):
                raise Unsupported(f"non-record {src.value_format.name} input")
            upper = {k.upper(): v for k, v in value.items()}
            row = []
            for n, t in cols:
                v = value.get(n, upper.get(n.upper()))
                row.append(None if v is None else coercer(t)(v))
            return vser(row)  # type: ignore[no-any-return]
        if src is not None and src.value_format.name == "JSON":
            return json.dumps(value).encode()
        if isinstance(value, str):
            return value.encode()
        return json.dumps(value).encode()

    # ------------------------------------------------------------------ outputs
    def _consumer(self) -> Consumer:
        c = getattr(self._local, "consumer", None)
        if c is None:
            c = Consumer(
                {
                    **client_config(self.bootstrap),
                    "group.id": "qtt-reader",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 10,
                }
            )
            self._local.consumer = c
        return c

    def _read_topic(self, topic: str) -> list[Any]:
        consumer = self._consumer()
        meta = self.admin.list_topics(timeout=10).topics.get(topic)  # by name would auto-create
        if meta is None or meta.error is not None:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        ends = {}
        for tp in tps:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if hi > lo:
                ends[tp.partition] = hi
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records = []
        deadline = time.monotonic() + 10
        try:
            while ends and time.monotonic() < deadline:
                for m in consumer.consume(1000, 0.1):
                    if m.error() is None:
                        records.append(m)
                for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        ends.pop(tp.partition, None)
        finally:
            consumer.unassign()
        multi = len(tps) > 1

        def order(m: Any) -> tuple[int, int, int]:
            """Several partitions: compare in record-time order, as the test driver does."""
            if multi:
                return (m.timestamp()[1], m.partition() or 0, m.offset() or 0)
            return (0, 0, m.offset() or 0)

        records.sort(key=order)
        return records

    def _check_outputs(
        self, spec: dict[str, Any], engine: Engine, prefix: str, shift: int = 0
    ) -> str | None:
        expected_by_topic: dict[str, list[dict[str, Any]]] = {}
        for out in spec.get("outputs", []):
            expected_by_topic.setdefault(out["topic"], []).append(out)
        registry = engine.ctx.registry_or_none() if self.registry() else None
        for topic, expected in expected_by_topic.items():
            src = self._source_for(engine, topic)
            records = self._read_topic(prefix + topic)
            if len(records) != len(expected):
                got = [self._decode(m, src, registry, prefix + topic) for m in records[:5]]
                return (
                    f"topic {topic}: expected {len(expected)} records, got {len(records)}: "
                    f"{json.dumps(got, default=str)[:400]}"
                )
            decoded = [self._decode(m, src, registry, prefix + topic) for m in records]
            _align_ties(records, decoded, expected)
            for i, (want, m) in enumerate(zip(expected, records, strict=True)):
                key, value = decoded[i]
                window = None
                if isinstance(key, WindowedKey):
                    key, window = key.key, key.window
                if "key" in want and not matches(key, want["key"]):
                    return f"topic {topic} record {i}: key {key!r} != expected {want['key']!r}"
                if "window" in want and _window_of(want["window"]) != window:
                    return f"topic {topic} record {i}: window {window} != expected {want['window']}"
                if not matches(value, want.get("value")):
                    return (
                        f"topic {topic} record {i}: value {json.dumps(value, default=str)[:300]} "
                        f"!= expected {json.dumps(want.get('value'))[:300]}"
                    )
                if "timestamp" in want and not _same_time(want["timestamp"], m, shift):
                    return (
                        f"topic {topic} record {i}: timestamp {m.timestamp()[1] - shift} "
                        "!= expected "
                        f"{want['timestamp']}"
                    )
        return None

    def _decode(self, m: Any, src: DataSource | None, registry: Any, topic: str) -> tuple[Any, Any]:
        raw_key, raw_value = m.key(), m.value()
        if src is None:
            return (raw_key.decode() if raw_key else None, _json_or_text(raw_value))
        key: Any
        window_info = getattr(src, "window", None)
        if window_info is not None and raw_key is not None:
            inner, start, end = split_windowed(raw_key, window_info)
            plain = replace(src, window=None)
            inner_key, inner_value = self._decode(_Rekeyed(m, inner), plain, registry, topic)
            return WindowedKey(inner_key, (start, end)), inner_value
        if raw_key is None or not src.key_columns:
            key = None if raw_key is None else _json_or_text(raw_key)
        elif src.key_format.name == "JSON":
            key = json.loads(raw_key)
        elif src.key_format.name == "JSON_SR":
            key = _json_or_text(raw_key[HEADER_SIZE:])
        elif src.key_format.name == "PROTOBUF":
            key = decode_record(registry, raw_key)
        elif src.key_format.name == "DELIMITED":
            key = raw_key.decode()
        else:
            key = make_deserializer(src.key_format, src.key_columns, topic, True, registry)(raw_key)
            if key and len(key) == 1 and src.key_format.name not in WRAPPED_KEYS:
                key = key[0]
            elif key:
                key = {n: v for (n, _), v in zip(src.key_columns, key, strict=True)}
        value: Any
        if raw_value is None:
            value = None
        elif src.value_format.name == "JSON_SR":
            value = _json_or_text(raw_value[HEADER_SIZE:])
        elif src.value_format.name == "PROTOBUF":
            value = decode_record(registry, raw_value)
        elif src.value_format.name in ("JSON", "DELIMITED"):
            value = (
                _json_or_text(raw_value) if src.value_format.name == "JSON" else raw_value.decode()
            )
        else:
            row = make_deserializer(src.value_format, src.value_columns, topic, False, registry)(
                raw_value
            )
            if row is None:
                value = None
            elif src.value_format.name == "KAFKA" or (
                src.value_format.wrap_single is False and len(src.value_columns) == 1
            ):
                value = row[0]
            else:
                value = {n: v for (n, _), v in zip(src.value_columns, row, strict=True)}
        return key, value

    def _check_post(self, spec: dict[str, Any], engine: Engine) -> str | None:
        post = spec.get("post") or {}
        for want in post.get("sources", []) or []:
            src = engine.metastore.get(want["name"])
            if src is None:
                return f"post: source {want['name']} missing"
            if want.get("type", "").upper() not in ("", src.kind):
                return f"post: {src.name} is a {src.kind}, expected {want['type']}"
            schema = want.get("schema")
            if schema is not None:
                ours = ", ".join(
                    [f"{n} {t} KEY" for n, t in src.key_columns]
                    + [f"{n} {t}" for n, t in src.value_columns]
                )
                if _schema_norm(ours) != _schema_norm(schema):
                    return f"post: {src.name} schema {ours!r} != expected {schema!r}"
            for fmt_key, ours_fmt in (
                ("keyFormat", src.key_format),
                ("valueFormat", src.value_format),
            ):
                want_fmt = want.get(fmt_key)
                if isinstance(want_fmt, str):
                    want_fmt = {"format": want_fmt}
                if (
                    isinstance(want_fmt, dict)
                    and want_fmt.get("format")
                    and want_fmt["format"] != ours_fmt.name
                ):
                    return f"post: {src.name} {fmt_key} {ours_fmt.name} != {want_fmt['format']}"
        return None

    def _cleanup(self, prefix: str, avro: bool = False) -> None:
        """Delete the case's topics and (for AVRO cases) its Schema Registry subjects."""
        registry = self.registry() if avro else None
        if registry is not None:
            try:
                for subject in registry.get_subjects():
                    if subject.startswith(prefix):
                        registry.delete_subject(subject)
                        registry.delete_subject(subject, permanent=True)
            except Exception:
                pass
        try:
            names = [t for t in self.admin.list_topics(timeout=10).topics if t.startswith(prefix)]
            if names:
                self.admin.delete_topics(names, operation_timeout=10)
        except Exception:
            pass


def _pull_completed(response: dict[str, Any]) -> bool:
    return any(r.get("finalMessage") == "Query Completed" for r in response.get("query", []))


def _row_set(rows: list[dict[str, Any]]) -> list[str]:
    """Rows (header first) as sorted JSON, to compare results whose order is not defined."""
    head = [json.dumps(r.get("header", {}).get("schema")) for r in rows if "header" in r]
    body = sorted(json.dumps(normalize(r["row"]["columns"])) for r in rows if "row" in r)
    return head + body


def _schema_norm(text: str) -> str:
    t = text.replace("`", "").upper()
    t = re.sub(r"\s+", " ", t)
    t = re.sub(r"\bINT\b", "INTEGER", t)
    t = t.replace("PRIMARY KEY", "KEY")  # a table's key columns, written either way
    t = re.sub(r"\bVARCHAR\b", "STRING", t)
    t = re.sub(r"\s*,\s*", ",", t)
    t = re.sub(r"\(\s*", "(", t)
    return t.strip()


def _align_ties(records: list[Any], decoded: list[Any], expected: list[dict[str, Any]]) -> None:
    """Records of several partitions with the same timestamp have no order Kafka keeps (the
    test driver's is its input order): within such a tie, take for each expected record the
    first matching record among the tie's partitions' next ones, keeping each partition's own
    order. Records and their decoded forms are reordered together, in place."""
    for i, want in enumerate(expected):
        ts = records[i].timestamp()[1]
        heads: dict[int, int] = {}
        for j in range(i, len(records)):
            if records[j].timestamp()[1] != ts:
                break
            heads.setdefault(records[j].partition() or 0, j)
        for j in sorted(heads.values()):
            key, value = decoded[j]
            if ("key" not in want or matches(key, want["key"])) and matches(
                value, want.get("value")
            ):
                records.insert(i, records.pop(j))
                decoded.insert(i, decoded.pop(j))
                break


def _json_or_text(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:  # numbers with a fraction as BigDecimals, as ksqlDB's runner reads JSON sinks: a
        # DECIMAL's scale then counts against a string expectation ("3.40" is not 3.4)
        return json.loads(raw, parse_float=Decimal)
    except ValueError:
        return raw.decode("utf-8", "replace")


@dataclass
class FileSummary:
    file: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowedKey:
    """A decoded windowed key: the key as the case writes it, and (window start, end)."""

    key: Any
    window: tuple[int, int]


class _Rekeyed:
    """A consumed record seen with another key (a windowed key's inner key)."""

    def __init__(self, message: Any, key: bytes) -> None:
        self._m = message
        self._key = key

    def key(self) -> bytes:
        return self._key

    def value(self) -> Any:
        return self._m.value()


def _window_of(want: dict[str, Any]) -> tuple[int, int]:
    return int(want["start"]), int(want["end"])


def _frame_input_key(key: bytes | None, window: dict[str, Any], src: DataSource | None) -> bytes:
    """An input key framed as the source's windowed topic holds it (session or time window)."""
    kind = str(window.get("type", "time")).upper()
    info = getattr(src, "window", None) or WindowInfo(
        "SESSION" if kind == "SESSION" else "TUMBLING"
    )
    return frame(key or b"", info, int(window["start"]), int(window["end"]))


LIBRDKAFKA_NOW_FLOOR_MS = 10**12  # 2001: a record time this late, expected 0, is librdkafka's "now"


def _same_time(want: Any, m: Any, shift: int) -> bool:
    """The record's time is the expected one; an expected 0 also matches the wall-clock time
    librdkafka puts on a record the server produced with timestamp 0 (it cannot write 0)."""
    got = m.timestamp()[1] - shift
    return int(want) == got or (int(want) == 0 and shift == 0 and got >= LIBRDKAFKA_NOW_FLOOR_MS)
