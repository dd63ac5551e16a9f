"""Shardline example component in Python: the `pipeline` world of shardline:connector@0.1.0.

Maps the WIT types onto orders.py (the logic, free of bindings). componentize-py generates
the `wit_world` package at build time (build.sh); it is not checked in.
"""

import orders
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    BatchContext,
    Destination,
    Event,
    Output,
    Processed,
    Rejection,
    SourceRecord,
    Stage,
)

_STAGES = {
    orders.DESERIALIZE: Stage.DESERIALIZE,
    orders.TRANSFORM: Stage.TRANSFORM,
    orders.ROUTE: Stage.ROUTE,
}


class Processor(exports.Processor):
    """The fused call: deserialize, transform and route every record of a batch."""

    def process(self, ctx: BatchContext, records: list[SourceRecord]) -> Processed:
        settings = orders.Settings.from_lookup(host.setting)
        outputs = []
        rejections = []
        for i, record in enumerate(records):
            try:
                p = orders.process(record.data, settings)
            except orders.StageReject as e:
                rejections.append(Rejection(i, _STAGES[e.stage], e.reason))
                continue
            if p is None:
                continue  # amount 0: filtered out on purpose
            key, payload, region, topics = p
            outputs.append(
                Output(
                    i,
                    Event(key, payload, [(orders.REGION_PROPERTY, region)], None),
                    [Destination(None, t, None, None) for t in topics],
                )
            )
        return Processed(outputs, rejections)
