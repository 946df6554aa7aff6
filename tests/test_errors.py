"""The shared exception: the contract re-exports it, so families and stages catch one class."""

from prunelib.errors import Unsupported
from prunelib.families import contract


def test_the_contract_raises_the_shared_unsupported() -> None:
    assert contract.Unsupported is Unsupported
    assert issubclass(Unsupported, Exception)
