"""Shardline guest SDK for Python: a per-record function becomes a Shardline component.

Write ``app.py``::

    import shardline

    @shardline.on_record
    def handle(record, ctx):
        order = record.json()                       # ValueError -> rejection
        if order["amount"] == 0:
            return None                             # filtered out
        return shardline.Output.json(order, key=order["id"]).to("orders-eu")

and pack it with componentize-py (``shardline build-guest`` does it). The host calls
the component once per batch (the ``processor`` export of the ``pipeline`` world of
``shardline:connector@0.1.0``); this module calls your function once per record. It may
return ``None`` (filter the record out), one :class:`Output`, or a list of them; any
exception it raises rejects that record alone (:class:`Reject` names the stage, any other
exception becomes a rejection at the ``deserialize`` stage with its text), so one bad
record never fails its batch.

The module's top level runs once, when componentize-py builds the component: read
:data:`settings` inside your function, not at import time.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import logging as _logging
from typing import Any, Callable, Iterable, Optional, Union

__all__ = [
    "DESERIALIZE", "TRANSFORM", "ROUTE", "Reject", "Output", "Record", "Context",
    "settings", "log", "on_record", "on_batch",
]

DESERIALIZE = "deserialize"
TRANSFORM = "transform"
ROUTE = "route"
_STAGE_NAMES = (DESERIALIZE, TRANSFORM, ROUTE)


class Reject(Exception):
    """Refuses the current record: it goes to the stage's error policy (e.g. dead letter)."""

    def __init__(self, reason: str, stage: str = DESERIALIZE):
        if stage not in _STAGE_NAMES:
            raise ValueError(f"unknown stage {stage!r}; one of {', '.join(_STAGE_NAMES)}")
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


class Output:
    """One message to publish. Build it with :meth:`json`, :meth:`text` or ``Output(bytes)``.

    Keyword arguments (all optional): ``key`` (default: the record's partition key),
    ``properties`` (a dict of message properties), ``event_time`` (milliseconds since the
    epoch or an aware ``datetime``; default: the arrival time) and ``topic`` (a first
    destination on the default sink). :meth:`to` adds destinations; none at all means the
    default sink's default topic.
    """

    __slots__ = ("payload", "key", "properties", "event_time", "destinations")

    def __init__(self, payload: bytes, *, key: Optional[str] = None,
                 properties: Optional[dict] = None,
                 event_time: Union[int, _dt.datetime, None] = None,
                 topic: Optional[str] = None):
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        self.payload = bytes(payload)
        self.key = key
        self.properties = dict(properties or {})
        if isinstance(event_time, _dt.datetime):
            event_time = int(event_time.timestamp() * 1000)
        self.event_time = event_time
        self.destinations: list = []
        if topic is not None:
            self.to(topic)

    @classmethod
    def json(cls, value: Any, **kwargs) -> "Output":
        """A payload of compact UTF-8 JSON from any value ``json.dumps`` accepts."""
        text = _json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return cls(text.encode("utf-8"), **kwargs)

    @classmethod
    def text(cls, value: str, **kwargs) -> "Output":
        """A payload of UTF-8 text."""
        return cls(value.encode("utf-8"), **kwargs)

    def to(self, topic: Optional[str] = None, *, sink: Optional[str] = None,
           partition_key: Optional[str] = None,
           explicit_hash_key: Union[str, int, None] = None) -> "Output":
        """Also sends the message to ``topic`` (a Pulsar topic or Kinesis stream) of ``sink``
        (a sink name of the config; default sink if ``None``). ``partition_key`` and
        ``explicit_hash_key`` choose the Kinesis shard for this destination."""
        if explicit_hash_key is not None:
            explicit_hash_key = str(explicit_hash_key)
        self.destinations.append((sink, topic, partition_key, explicit_hash_key))
        return self

    def property(self, name: str, value: str) -> "Output":
        """Sets one message property."""
        self.properties[name] = value
        return self


class Record:
    """One Kinesis record: ``index`` in the batch, ``partition_key``, ``arrival_millis``
    (milliseconds since the epoch) and ``data`` (bytes, exactly as produced)."""

    __slots__ = ("index", "partition_key", "arrival_millis", "data")

    def __init__(self, index: int, partition_key: str, arrival_millis: int, data: bytes):
        self.index = index
        self.partition_key = partition_key
        self.arrival_millis = arrival_millis
        self.data = data

    def text(self) -> str:
        """The data as UTF-8 text (``UnicodeDecodeError`` if it is not)."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The data parsed as strict JSON (``ValueError`` if it is not: ``NaN`` and
        ``Infinity`` are refused, as JSON does)."""
        return _json.loads(self.text(), parse_constant=_no_constant)

    def __repr__(self) -> str:
        return f"Record(index={self.index}, partition_key={self.partition_key!r}, {len(self.data)} bytes)"


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class Context:
    """What is the same for the whole batch: ``stream_name``, ``shard_id``,
    ``millis_behind_latest`` (or ``None``), and :data:`settings` and :data:`log`."""

    __slots__ = ("stream_name", "shard_id", "millis_behind_latest")

    def __init__(self, stream_name: str, shard_id: str, millis_behind_latest: Optional[int]):
        self.stream_name = stream_name
        self.shard_id = shard_id
        self.millis_behind_latest = millis_behind_latest

    settings = property(lambda self: settings)
    log = property(lambda self: log)


class _Settings:
    """The stage's ``settings:`` from the config (read once, then cached), with defaults
    and typed getters. ``settings["k"]`` raises ``KeyError`` when absent."""

    _TRUE = {"true", "yes", "on", "1"}
    _FALSE = {"false", "no", "off", "0"}

    def __init__(self):
        self._values: Optional[dict] = None

    def _all(self) -> dict:
        if self._values is None:
            from wit_world.imports import host  # generated by componentize-py

            self._values = dict(host.settings())
        return self._values

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self._all().get(key, default)

    def get_int(self, key: str, default: Optional[int] = None) -> Optional[int]:
        return self._typed(key, default, int, "an integer")

    def get_float(self, key: str, default: Optional[float] = None) -> Optional[float]:
        return self._typed(key, default, float, "a number")

    def get_bool(self, key: str, default: Optional[bool] = None) -> Optional[bool]:
        def parse(v: str) -> bool:
            v = v.strip().lower()
            if v in self._TRUE:
                return True
            if v in self._FALSE:
                return False
            raise ValueError(v)

        return self._typed(key, default, parse, "a boolean")

    def _typed(self, key, default, parse, what):
        value = self._all().get(key)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            raise ValueError(f"setting {key}: {value!r} is not {what}") from None

    def __getitem__(self, key: str) -> str:
        return self._all()[key]

    def __contains__(self, key: str) -> bool:
        return key in self._all()

    def items(self):
        return self._all().items()


settings = _Settings()
"""The stage's settings (see :class:`_Settings`)."""


class _HostHandler(_logging.Handler):
    """Sends Python log records to the host's log."""

    def emit(self, record: _logging.LogRecord) -> None:
        from wit_world.imports import host

        if record.levelno >= _logging.ERROR:
            level = host.Level.ERROR
        elif record.levelno >= _logging.WARNING:
            level = host.Level.WARN
        elif record.levelno >= _logging.INFO:
            level = host.Level.INFO
        elif record.levelno >= _logging.DEBUG:
            level = host.Level.DEBUG
        else:
            level = host.Level.TRACE
        try:
            host.log(level, self.format(record))
        except Exception:  # logging must never fail a record
            pass


log = _logging.getLogger("shardline")
"""A ``logging.Logger`` whose records go to the host's log (so does the root logger's)."""
_root = _logging.getLogger()
if not _root.handlers:
    _root.addHandler(_HostHandler())
    _root.setLevel(_logging.DEBUG)

_Result = Union[None, Output, Iterable[Output]]
_record_handler: Optional[Callable[[Record, Context], _Result]] = None
_batch_handler: Optional[Callable[[list, Context], list]] = None


def on_record(fn: Callable[[Record, Context], _Result]):
    """Decorator: ``fn(record, ctx)`` is called for every record of every batch."""
    global _record_handler
    _record_handler = fn
    return fn


def on_batch(fn: Callable[[list, Context], list]):
    """Decorator for a batch-level function instead: ``fn(records, ctx)`` returns one result
    per record, in order, each what an ``on_record`` function would return, or an exception
    instance to reject that record."""
    global _batch_handler
    _batch_handler = fn
    return fn


def _reason(e: BaseException) -> str:
    if isinstance(e, Reject):
        return e.reason
    return f"{type(e).__name__}: {e}"


def _process(ctx, records):
    """The fused call: every record through the handler, one result for the host."""
    from wit_world.imports.types import Destination, Event, Output as WitOutput, Processed
    from wit_world.imports.types import Rejection, Stage

    stages = {DESERIALIZE: Stage.DESERIALIZE, TRANSFORM: Stage.TRANSFORM, ROUTE: Stage.ROUTE}
    context = Context(ctx.stream_name, ctx.shard_id, ctx.millis_behind_latest)
    recs = [Record(i, r.partition_key, r.arrival_millis, r.data) for i, r in enumerate(records)]
    outputs: list = []
    rejections: list = []

    def reject(i: int, e: BaseException) -> None:
        stage = e.stage if isinstance(e, Reject) else DESERIALIZE
        rejections.append(Rejection(i, stages[stage], _reason(e)))

    def collect(i: int, result) -> None:
        if result is None:
            return
        if isinstance(result, BaseException):
            return reject(i, result)
        items = [result] if isinstance(result, Output) else list(result)
        converted = []
        for o in items:
            if not isinstance(o, Output):
                return reject(i, TypeError(f"the handler returned {type(o).__name__}, not an Output"))
            props = [(str(k), str(v)) for k, v in o.properties.items()]
            event = Event(o.key, o.payload, props, o.event_time)
            converted.append(WitOutput(i, event, [Destination(*d) for d in o.destinations]))
        outputs.extend(converted)

    if _batch_handler is not None:
        try:
            results = list(_batch_handler(recs, context))
        except Exception as e:  # the whole batch refused
            results = [e] * len(recs)
        for r in recs:
            collect(r.index, results[r.index] if r.index < len(results) else None)
    elif _record_handler is not None:
        handler = _record_handler
        for r in recs:
            try:
                result = handler(r, context)
            except Exception as e:
                reject(r.index, e)
                continue
            try:
                collect(r.index, result)
            except Exception as e:
                reject(r.index, e)
    else:
        raise RuntimeError("no handler: decorate a function with @shardline.on_record")
    return Processed(outputs, rejections)


try:  # inside a component build: the export the host calls
    from wit_world import exports as _exports

    class Processor(_exports.Processor):
        def process(self, ctx, records):
            return _process(ctx, records)

except ImportError:  # imported outside a build (tests, editors): no export
    pass
