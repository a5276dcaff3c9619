"""Bounded load on loopback: sustained concurrency with zero errors, and a long run with flat memory.

Both loops stop at a request count or a deadline. The soak sends the full 100,000 requests
unless 75 s pass first; SERVING_LOAD_SECONDS, SERVING_SOAK_REQUESTS and SERVING_SOAK_SECONDS
change the bounds for a by-hand run (the suite keeps them short to stay within its time budget).
"""

import statistics
import threading

import pytest

from tests.e2e.serverproc import ServerProcess, environment_int, rss_bytes, run_load

pytestmark = pytest.mark.slow
MiB = 1 << 20




def test_thirty_seconds_at_32_concurrent_clients_without_an_error(champion_server: ServerProcess, raw_records: list[dict]) -> None:
    seconds = environment_int("SERVING_LOAD_SECONDS", 30)
    result = run_load(champion_server.port, raw_records, clients=32, max_requests=2_000_000, max_seconds=seconds)
    print(f"load: {result.sent} requests in {result.seconds:.1f} s ({result.sent / result.seconds:.0f}/s), "
          f"statuses {dict(result.statuses)}")
    assert result.seconds >= seconds * 0.95  # it really ran for the full time
    assert result.transport_errors == [] and result.failures == 0, (result.statuses, result.transport_errors[:3])
    assert champion_server.proc.poll() is None


def test_many_requests_with_flat_memory(champion_server: ServerProcess, raw_records: list[dict]) -> None:
    pid = champion_server.proc.pid
    warm = run_load(champion_server.port, raw_records, clients=16, max_requests=5_000, max_seconds=10)
    assert warm.failures == 0
    baseline = rss_bytes(pid)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append(rss_bytes(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = run_load(champion_server.port, raw_records, clients=32,
                          max_requests=environment_int("SERVING_SOAK_REQUESTS", 100_000),
                          max_seconds=environment_int("SERVING_SOAK_SECONDS", 75))
    finally:
        stop.set()
        sampler.join()
    end = statistics.median(samples[-5:])
    print(f"soak: {result.sent} requests in {result.seconds:.1f} s; RSS {baseline / MiB:.0f} MiB after warm-up, "
          f"{end / MiB:.0f} MiB at the end, peak {max(samples) / MiB:.0f} MiB")
    assert result.transport_errors == [] and result.failures == 0, (result.statuses, result.transport_errors[:3])
    assert result.sent >= 10_000
    assert end - baseline < 48 * MiB, f"RSS grew from {baseline / MiB:.0f} to {end / MiB:.0f} MiB"
    assert max(samples) - baseline < 96 * MiB
