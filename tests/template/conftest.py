"""The fixtures every template test shares: template.yaml as written, and as CloudFormation receives
it after the SAM transform (one transform per test module), deployed with the default parameters
(the optional VPC, key, tracing and reserved concurrency off: tests/template/test_options.py turns
each on)."""

import pytest
from test_iam import load_source, sam_transform, with_parameters


@pytest.fixture(scope="module")
def source() -> dict:
    return load_source()


@pytest.fixture(scope="module")
def cfn(source) -> dict:
    return with_parameters(sam_transform(source))


@pytest.fixture(scope="module")
def transformed(source) -> dict:
    """After the SAM transform, the conditions not yet chosen."""
    return sam_transform(source)
