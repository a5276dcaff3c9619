"""The online store from the warehouse's side: landed events written into it, and stores built
as of a moment for the parity gate's replay.

Landed events replace what servers recorded under the same event key (landed data is the truth:
corrections and backfills win), and are written without the live sanity checks (an old landed
event is history, not an implausible request).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path


from serving.store import OnlineStore, RecordOutcome, check_fields, open_store
from training.dbt_manifest import EntityStateModel
from training.warehouse import connect_warehouse

BATCH_ROWS = 100_000


def load_events(store: OnlineStore, warehouse: Path, state: EntityStateModel, *, where: str = "",
                params: list[object] | None = None, echo=None) -> RecordOutcome:  # noqa: ANN001
    """Write the landed events of ``state`` (its events model; ``where`` filters them) into ``store``."""
    spec = state.spec
    check_fields(store, spec)
    columns = ", ".join(f'"{c}"' for c in (spec.event_key, *spec.fields))
    filters = f'where "{spec.key}" is not null and "{spec.time}" is not null' + (f" and ({where})" if where else "")
    sql = (f'select cast("{spec.key}" as varchar), epoch_us(cast("{spec.time}" as timestamp)), {columns} '
           f'from {state.events_relation} {filters} order by 1, 2')
    outcome = RecordOutcome()
    with connect_warehouse(warehouse, read_only=True) as con:
        reader = con.execute(sql, params or []).fetch_record_batch(BATCH_ROWS)
        for batch in reader:
            key, time, event_key, *fields = batch.to_pydict().values()
            rows = [(k, (e, t, *f)) for k, t, e, *f in zip(key, time, event_key, *fields)]
            outcome = outcome + store.record(spec, rows, replace=True, check=False)
            if echo is not None:
                echo(f"  {spec.name}: {outcome.recorded:,} events written")
    return outcome


@contextlib.contextmanager
def store_as_of(warehouse: Path, states: tuple[EntityStateModel, ...], before: str) -> Iterator[OnlineStore]:
    """A temporary embedded store holding every landed event before ``before`` (an ISO time): what
    production's store held when the held-out window began."""
    with tempfile.TemporaryDirectory(prefix="replay-store-") as folder:
        store = open_store(f"embedded:{folder}")
        try:
            for state in states:
                load_events(store, warehouse, state, where=f'cast("{state.spec.time}" as timestamp) < cast(? as timestamp)',
                            params=[before])
            yield store
        finally:
            store.close()
