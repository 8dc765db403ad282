"""The test receiver's capacity (infra/receiver.py): at most `capacity` requests served in any
1-second window, 429 with Retry-After beyond, every request recorded; and `peak_per_second`, the
figure the bench's receiver-capacity section (infra/bench_pacing.py) and the soak report. No
stack, no Rust: plain HTTP to a receiver on 127.0.0.1."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

from receiver import Receiver, SlidingWindow, peak_per_second  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_peak_per_second_counts_a_sliding_window_not_calendar_seconds():
    assert peak_per_second([]) == 0
    assert peak_per_second([5.0]) == 1
    # Three in 10.6..10.9 and three in 11.0..11.3: 6 within 0.7 s, though no calendar second holds more than 3.
    assert peak_per_second([10.6, 10.7, 10.9, 11.0, 11.2, 11.3]) == 6
    # The window is [t, t + 1): a timestamp exactly 1 s later starts the next one.
    assert peak_per_second([0.0, 1.0, 2.0, 3.0]) == 1
    assert peak_per_second([0.0, 0.999, 1.0]) == 2


def test_peak_per_second_takes_timestamps_in_any_order():
    times = [3.5, 0.1, 3.2, 0.2, 3.9, 3.3]
    assert peak_per_second(times) == 4
    assert times == [3.5, 0.1, 3.2, 0.2, 3.9, 3.3], "the caller's list is left as it was"


def test_peak_per_second_of_an_even_rate_is_the_rate():
    # Exact binary fractions: i / 5 would put 0.6000000000000001 and 1.6 in one window.
    assert peak_per_second([i / 4 for i in range(80)]) == 4  # 4 a second for 20 s
    assert peak_per_second([1000 + i / 8 for i in range(160)]) == 8


def test_a_sliding_window_admits_capacity_per_second_and_forgets_after_one_second():
    w = SlidingWindow(5)
    assert [w.admit(100.0 + i * 0.01) for i in range(7)] == [True] * 5 + [False] * 2
    assert not w.admit(100.99)
    assert w.admit(101.0), "the first admission is 1 s old: its slot is free again"
    assert not w.admit(101.005)
    assert w.admit(101.05)


def test_a_fractional_capacity_admits_one_per_interval():
    w = SlidingWindow(0.5)
    assert w.admit(0.0)
    assert not w.admit(1.0)
    assert not w.admit(1.99)
    assert w.admit(2.0)
    with pytest.raises(ValueError):
        SlidingWindow(0)


def post(url: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=b'{"type": "x"}', headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_an_endpoint_over_capacity_answers_429_with_retry_after_and_records_it(receiver):
    url = receiver.endpoint("/crm", SECRET, answers=[200], capacity=3, retry_after="2")
    answers = [post(url) for _ in range(5)]
    assert [s for s, _ in answers] == [200, 200, 200, 429, 429]
    assert all(h.get("retry-after") == "2" for s, h in answers if s == 429)
    assert all("retry-after" not in h for s, h in answers if s == 200)
    assert [r.status for r in receiver.received] == [200, 200, 200, 429, 429], "429s are recorded too"
    assert receiver.endpoints["/crm"].calls == 3, "a 429 over capacity uses no answer of the script"
    assert peak_per_second([r.at for r in receiver.received]) == 5


def test_the_script_of_answers_goes_on_after_capacity_429s(receiver):
    url = receiver.endpoint("/flaky", SECRET, answers=[500, 204], capacity=1, retry_after=None)
    first, second = post(url), post(url)
    assert first[0] == 500
    assert second[0] == 429 and "retry-after" not in second[1], "retry_after=None: no header"
    receiver.endpoints["/flaky"].window.admitted.clear()  # as if a second had passed
    assert post(url)[0] == 204


def test_without_capacity_an_endpoint_answers_as_before(receiver):
    url = receiver.endpoint("/plain", SECRET, answers=[500, 500, 200])
    assert [post(url)[0] for _ in range(5)] == [500, 500, 200, 200, 200]
    assert all("retry-after" not in post(url)[1] for _ in range(2))
    url = receiver.endpoint("/down", SECRET, answers=[503, 429, 200])
    answers = [post(url) for _ in range(3)]
    assert [s for s, _ in answers] == [503, 429, 200]
    assert all("retry-after" not in h for _, h in answers), "no Retry-After unless asked for"


def test_a_retry_after_given_goes_with_the_scripts_429_and_503(receiver):
    url = receiver.endpoint("/busy", SECRET, answers=[429, 503, 500, 200], retry_after="3")
    answers = [post(url) for _ in range(4)]
    assert [(s, h.get("retry-after")) for s, h in answers] == [(429, "3"), (503, "3"), (500, None), (200, None)]
