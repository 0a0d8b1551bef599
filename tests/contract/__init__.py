"""Standard suites, one per connector Protocol of :mod:`syncd.contracts`, in the manner of
vdirsyncer's ``StorageTests`` and singer-sdk's standard tap tests.

- :class:`~contract.source.SourceContract` holds a :class:`~syncd.contracts.Source` to its
  contract; a subclass provides the ``source_world`` fixture (a
  :class:`~contract.source.SourceWorld`).
- :class:`~contract.crm.CrmContract` does the same for a :class:`~syncd.contracts.Crm`, with a
  ``crm_world`` fixture (a :class:`~contract.crm.CrmWorld`).

A new connector gets its whole suite with one subclass in ``test_sources.py`` or
``test_crms.py``, named ``Test…`` so that pytest collects it::

    class TestMastodonSource(SourceContract):
        @pytest.fixture
        def source_world(self) -> Iterator[MastodonWorld]:
            with MastodonSandbox() as sandbox:
                yield MastodonWorld(sandbox)

A world that cannot provoke a failure leaves it out of its ``faults`` (those tests skip);
a behaviour an implementation is known to lack goes in the subclass's ``known_gaps``, which
runs that test as a strict xfail.
"""

from .crm import CrmContract, CrmWorld
from .source import SourceContract, SourceWorld

__all__ = ["CrmContract", "CrmWorld", "SourceContract", "SourceWorld"]
