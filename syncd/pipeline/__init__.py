"""The flow of one interaction: poll a page into state, resolve its author, deliver it to the CRM.

:class:`Pipeline` holds the three stages over what they share (``context``): a ``poll`` stage
(:class:`~syncd.pipeline.poll.Poller`, one transaction per page with its cursor), the resolver
(:mod:`syncd.resolver.stage`) and a ``deliver`` stage (:class:`~syncd.pipeline.deliver.Writer`).
``history`` turns a stored interaction into the CRM's history record; ``coordination`` runs the
same pipeline under the job locks several instances share.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from syncd.contracts import CaseFiling, Crm, KnownAuthors, Source
from syncd.model import Account, Stream
from syncd.pipeline.cases import CaseFiler, CasesResult
from syncd.pipeline.context import Clock, Context, PipelineSettings, utcnow
from syncd.pipeline.deliver import DeliverResult, Writer
from syncd.pipeline.poll import Poller, PollResult
from syncd.resolver import stage
from syncd.resolver.stage import ResolveResult
from syncd.state.db import Database

__all__ = [
    "CasesResult",
    "Clock",
    "DeliverResult",
    "Pipeline",
    "PipelineSettings",
    "PollResult",
    "utcnow",
]


class Pipeline:
    """One CRM's flow, from every source: the daemon's jobs and the commands run its stages."""

    def __init__(
        self,
        db: Database,
        crm_name: str,
        crm: Crm,
        settings: PipelineSettings | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.context = Context(
            db, crm_name, settings or PipelineSettings(), clock, tuple(crm.history_targets)
        )
        self.db = db
        self.crm_name = crm_name
        self.crm = crm  # the resolver's; the writer holds its own
        self.settings = self.context.settings
        self.clock = clock
        self.stopping = self.context.stopping
        self.retrying = self.context.retrying
        self.poller = Poller(self.context)
        self.writer = Writer(self.context, crm)
        # The highest identity the on-file linker tried: each run tries only newer ones.
        self._linked_after = 0
        # A CRM that works conversations as cases has each one's case filed before its
        # records are written.
        self.cases: CaseFiler | None = None
        if isinstance(crm, CaseFiling) and (policy := crm.case_policy) is not None:
            self.cases = CaseFiler(self.context, crm, policy)

    # -- poll ----------------------------------------------------------------------------
    def poll(
        self,
        source_name: str,
        source: Source,
        account: Account,
        stream: Stream,
        *,
        spacing: timedelta | None = None,
    ) -> PollResult:
        """Walk one stream from its stored cursor: see :meth:`Poller.poll`. ``spacing``:
        the daemon's scheduled polls, which several instances share (their pipeline leaves
        a stream another instance began walking less than this ago); one alone walks."""
        return self.poller.poll(source_name, source, account, stream)

    def accounts(
        self, source_name: str, source: Source, handles: Sequence[str]
    ) -> tuple[list[Account], list[str]]:
        """Brand accounts with their immutable ids, and the handles the network does not know."""
        return self.poller.accounts(source_name, source, handles)

    def known_authors(self, network: str) -> KnownAuthors:
        """Authors whose profiles state holds: a source reads only the others."""
        return self.poller.known_authors(network)

    def record_poll_error(self, source_name: str, account: str, stream: Stream, error: str) -> None:
        self.poller.record_poll_error(source_name, account, stream, error)

    # -- resolve -------------------------------------------------------------------------
    def resolve(
        self,
        gather: timedelta = timedelta(0),
        *,
        check_crm: bool | None = None,
        on_file_first: bool = True,
    ) -> ResolveResult:
        """Offer held authors to the resolver chain, in batches; see syncd.resolver.stage.
        ``gather``: new authors' candidate search may wait this long for a full batch
        (the daemon's, which runs again soon; a one-off cycle must not wait). ``check_crm``:
        ask the CRM which people changed now (True), when its interval passed (None), or
        not in this run (False). ``on_file_first``: False when the on-file linker
        (:meth:`link_on_file`) runs beside it, as in the daemon."""
        return stage.run(
            self.db,
            self.crm_name,
            self.crm,
            self.settings.resolve,
            self.clock,
            self.retrying,
            self.stopping.is_set,
            gather=gather,
            check_crm=check_crm,
            on_file_first=on_file_first,
        )

    def link_on_file(self) -> ResolveResult:
        """Link the due authors the local copy of the CRM's keys knows, with no network
        call (see syncd.resolver.stage.link_on_file)."""
        result, self._linked_after = stage.link_on_file(
            self.db, self.crm_name, self.crm, self.settings.resolve, self.clock, self._linked_after
        )
        return result

    # -- deliver -------------------------------------------------------------------------
    def deliver(self, max_batches: int | None = None) -> DeliverResult:
        """Drain ready deliveries to the CRM in batches, oldest first (the :class:`Writer`);
        with cases, each round's cases filed first (see :meth:`file_cases`)."""
        if self.cases is None:
            return self.writer.deliver(max_batches)
        total = DeliverResult()
        room = max_batches
        while not self.stopping.is_set() and (room is None or room > 0):
            filed = self.file_cases()
            done = self.writer.deliver(room)
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(done, name))
            if not filed.decided and not done.attempted:
                break  # no case waits and nothing was ready
            if room is not None:  # a bounded run counts the batches each round wrote
                room -= max(1, -(-done.attempted // self.settings.write_batch))
        return total

    def file_cases(self) -> CasesResult:
        """Decide one write batch's worth of waiting interactions' cases and file them with
        the CRM (:class:`~syncd.pipeline.cases.CaseFiler`); nothing without cases."""
        return self.cases.file() if self.cases is not None else CasesResult()
