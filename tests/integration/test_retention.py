"""A dead letter can be redriven for as long as its queue keeps it: the webhook's claim (and the
decision of a stateful event) must outlive the dead-letter queues' retention, or a redrive finds
the claim gone and drops the webhook as "settled (missing)"."""

import re

import cfn

ROOT = cfn.ROOT


def rust_const(path: str, name: str) -> int:
    text = (ROOT / path).read_text()
    m = re.search(rf"pub(?:\(crate\))? const {name}: i64 = ([0-9_ *]+);", text)
    assert m, f"{name} not found in {path}"
    return eval(m.group(1).replace("_", ""))  # noqa: S307 - a literal product like 16 * 86400


def test_claims_and_decisions_outlive_every_dead_letter_queue():
    resources = cfn.load_template()["Resources"]
    dlqs = {name: r["Properties"].get("MessageRetentionPeriod", 345600) for name, r in resources.items()
            if r["Type"] == "AWS::SQS::Queue" and name.endswith("DeadLetterQueue")}
    assert dlqs, "the template declares dead-letter queues"
    longest = max(int(v) for v in dlqs.values())
    claim = rust_const("shared/src/store/claims.rs", "CLAIM_TTL_SECONDS")
    decision = rust_const("shared/src/store/state.rs", "DECISION_TTL_SECONDS")
    # Retries can run for days before the dead letter is written; a day beyond that at least.
    assert claim >= longest + 86400, (claim, longest)
    assert decision >= longest + 86400, (decision, longest)
