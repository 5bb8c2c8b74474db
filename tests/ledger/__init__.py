import pytest

# the contract and the helpers assert for the tests that use them: report their failures in full
pytest.register_assert_rewrite("tests.ledger.contract", "tests.ledger.helpers")
