"""The fixtures every template test shares: template.yaml as written, and as CloudFormation receives
it after the SAM transform (one transform per test module)."""

import pytest
from test_iam import load_source, sam_transform


@pytest.fixture(scope="module")
def source() -> dict:
    return load_source()


@pytest.fixture(scope="module")
def cfn(source) -> dict:
    return sam_transform(source)
