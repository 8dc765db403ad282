"""The soak's verdict on duplicates (infra/soak.py, `classify_duplicates` and
`timed_out_attempts`): a webhook that arrived twice fails the run unless its sender logged the
earlier attempt as timed out or a function was killed right after it arrived. No stack."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

from soak import classify_duplicates, timed_out_attempts  # noqa: E402


def test_a_duplicate_after_a_logged_timeout_is_at_least_once():
    why = classify_duplicates({"msg_a": [10.0, 12.5]}, Counter({"msg_a": 1}), kills_at=[])
    assert why == {"msg_a": "after_timeout"}


def test_a_duplicate_with_no_timeout_and_no_kill_is_unexplained():
    why = classify_duplicates({"msg_a": [10.0, 12.5], "msg_b": [3.0]}, Counter(), kills_at=[100.0])
    assert why == {"msg_a": "unexplained"}, "one arrival is no duplicate; two with no cause fail"


def test_each_extra_arrival_needs_its_own_timeout():
    why = classify_duplicates({"msg_a": [1.0, 4.0, 9.0]}, Counter({"msg_a": 1}), kills_at=[])
    assert why == {"msg_a": "unexplained"}


def test_a_kill_explains_only_a_duplicate_whose_first_arrival_came_just_before_it():
    arrivals = {"msg_a": [50.0, 120.0], "msg_b": [20.0, 90.0], "msg_c": [56.0, 70.0]}
    why = classify_duplicates(arrivals, Counter(), kills_at=[55.0], kill_window=10.0)
    assert why == {"msg_a": "after_kill", "msg_b": "unexplained", "msg_c": "unexplained"}


def test_timed_out_attempts_are_read_from_the_functions_json_logs(tmp_path):
    def line(message: str, wid: str, error: str) -> str:
        return json.dumps({"level": "WARN", "message": message, "webhook_id": wid, "error": error})

    (tmp_path / "sms.log").write_text("\n".join([
        line("webhook attempt failed", "msg_a", "timed out after 2.001162336s"),
        line("webhook attempt failed", "msg_a", "timed out after 2.0s"),
        line("webhook attempt failed", "msg_b", "HTTP 500"),
        line("webhook delivered", "msg_c", "timed out"),
        "not json: webhook attempt failed timed out",
        "",
    ]))
    (tmp_path / "admin.log").write_text(line("webhook attempt failed", "msg_d", "timed out after 2s") + "\n")
    assert timed_out_attempts(tmp_path) == Counter({"msg_a": 2, "msg_d": 1})
