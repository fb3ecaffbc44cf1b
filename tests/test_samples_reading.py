"""Reading a run's samples: every endpoint's latencies in one pass are those read endpoint by endpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from ratchet.store.samples import durations_by_endpoint, endpoint_durations

_requests = st.lists(
    st.tuples(st.sampled_from(["customer", "product", "orders-by-email", "health"]), st.floats(0.1, 5000.0)),
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(requests=_requests)
def test_one_pass_gives_each_endpoint_its_latencies_in_the_runs_order(tmp_path_factory, requests) -> None:  # type: ignore[no-untyped-def]
    run: Path = tmp_path_factory.mktemp("run") / "run.parquet"
    pq.write_table(
        pa.table(
            {
                "endpoint": pa.array([e for e, _ in requests], pa.string()),
                "duration_ms": pa.array([d for _, d in requests], pa.float64()),
            }
        ),
        run,
    )
    by_endpoint = durations_by_endpoint(run)
    assert set(by_endpoint) == {e for e, _ in requests}
    for endpoint, durations in by_endpoint.items():
        assert np.array_equal(durations, endpoint_durations(run, endpoint))
