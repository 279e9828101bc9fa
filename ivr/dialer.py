"""The outbound dialer: due cases -> Twilio calls, inside the limits, across processes.

Each call is claimed in one short database transaction that

1. checks the calling window at that moment (:func:`minping.calling.is_allowed`);
2. locks the pacing row (:class:`~minping.models.Lease` ``"ivr-dialer"``: an
   ``UPDATE`` takes its row lock on PostgreSQL, the write lock on SQLite) whose
   ``state["last_dial"]`` is the time of the last call placed by *any* dialer
   process, and refuses when ``1 / calls_per_second`` has not passed;
3. counts the open IVR attempts in the database (the calls in flight of every
   process) against ``max_concurrent_calls``;
4. holds one due case (:func:`minping.cases.hold_cases_for_ivr`: conditional
   update, ``SKIP LOCKED`` on PostgreSQL), opens its attempt and stamps the
   pacing row.

Only then is the call placed (``client.calls.create``), outside the
transaction.  A case is therefore never dialed twice at once, nor while an
interviewer holds it, and the limits hold however many dialers run.  HTTP 429
from Twilio is retried with exponential back-off; any other error closes the
attempt as a technical problem (3.16) with the error recorded.

The dialer takes its clock (``now``) and its ``sleep`` as parameters, so it runs
on the simulator's virtual clock (:mod:`ivr.fieldwork`) as well as in real time
(``minping dial``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from twilio.base.exceptions import TwilioException, TwilioRestException

from ivr import callstate, inbound, live
from minping import calling, calltimes, cases
from minping.models import AuditLog, CallAttempt, FrameContact, Lease, SampleCase

log = logging.getLogger("ivr.dialer")

PACING_LEASE = "ivr-dialer"
#: The call progress events the dialer subscribes to (production and tests).
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
#: The events the application needs: ``answered`` (the time a call was answered)
#: and ``completed`` (the final status -- completed, busy, no-answer, failed,
#: canceled -- which closes the attempt).  ``initiated`` and ``ringing`` only
#: leave a trace in the attempt's events.
REQUIRED_STATUS_EVENTS = ("answered", "completed")

#: A moment after every field period (:meth:`Dialer.next_due` asks which cases are due then).
_EVER = datetime(9000, 1, 1, tzinfo=UTC)
#: :attr:`StepResult.quiet_until` when no case will ever be due again.
QUIET_FOREVER = _EVER

#: How often a dialer at its concurrency limit looks for a free line again (real time).
CONCURRENCY_POLL_SECONDS = 0.5

# The claim's statements, built once: the dialer runs them for every call it places,
# and building a statement and its cache key cost more than running it.
_lease, _attempt = Lease.__table__.c, CallAttempt.__table__.c
#: Lock the pacing row (its row lock on PostgreSQL, the write lock on SQLite); its state.
_LOCK_PACING = (update(Lease.__table__).where(_lease.name == PACING_LEASE)
                .values(updated_at=bindparam("now")).returning(_lease.state))
#: Stamp the pacing row with the call just claimed.
_STAMP_PACING = (update(Lease.__table__).where(_lease.name == PACING_LEASE)
                 .values(state=bindparam("pacing", type_=_lease.state.type),
                         holder=bindparam("holder")))
#: The IVR attempts still open: the calls in flight of every dialer.
_OPEN_ATTEMPTS = (select(func.count()).select_from(CallAttempt.__table__)
                  .where(_attempt.channel == "ivr", _attempt.outcome.is_(None)))
_PHONE = select(FrameContact.__table__.c.phone).where(
    FrameContact.__table__.c.id == bindparam("contact_id"))


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`Dialer.step` did.

    ``blocked`` says why it stopped placing calls: ``"window"`` (outside the
    calling window), ``"rate"`` (calls per second), ``"concurrency"`` (calls in
    flight), ``"idle"`` (no case is due) or ``"done"`` (no case will ever be due
    again and no call is in flight; cases left to interviewers -- CATI-first not
    tried yet, refusal conversion, reassigned, with an appointment -- do not count,
    so ``run(until_done=True)`` stops when only those remain).  ``wait_until`` is when trying again makes
    sense (``None``: unknown or never).  With ``"idle"``, ``quiet_until`` is the
    time before which no case can become due unless the database changes (a
    webhook, another process): :data:`QUIET_FOREVER` when none ever will, ``None``
    when a case is due but held elsewhere (a hold's end is not known here).
    """

    placed: int
    blocked: str
    wait_until: datetime | None = None
    in_flight: int = 0
    quiet_until: datetime | None = None


@dataclass
class Progress:
    """Counters of one dialer's run (this process only)."""

    placed: int = 0
    errors: int = 0
    retried_429: int = 0
    notices: int = 0
    in_flight: int = 0
    closed: int = 0
    interviews: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self.started)
        return (f"in flight {self.in_flight:3d} | placed {self.placed} "
                f"({self.placed / elapsed:.2f}/s) | completed {self.closed} | "
                f"interviews {self.interviews} | 429 retries {self.retried_429} | "
                f"errors {self.errors}")


class Dialer:
    """Places IVR calls for due cases.

    Parameters
    ----------
    db : minping.db.Database
    cfg : minping.config.SurveyConfig
    client : twilio.rest.Client
        The real Twilio, or a client pointed at the simulator.
    public_url : str
        The application's public URL (the webhooks Twilio calls).
    from_number : str
        The survey's caller ID (E.164).
    now : callable
        The clock: returns an aware UTC datetime.
    sleep : callable
        Waits a number of seconds (the 429 back-off); the simulator's
        ``advance`` on a virtual clock.
    rules : minping.config.CallingRules, optional
        Defaults to ``cfg.calling``.
    draw_id : int, optional
        Only dial cases of this draw.
    name : str, optional
        This dialer's name in the pacing row (default: host and pid).
    notice_lead : timedelta
        With ``[ivr] sms_advance_notice``, how long after the SMS notice the
        first call comes.
    max_429_retries : int
        How many times a call refused with HTTP 429 is retried.
    backoff_seconds : float
        The first back-off wait (doubled each retry).
    status_events : sequence of str
        The call progress events to subscribe to (default :data:`STATUS_EVENTS`);
        it must hold :data:`REQUIRED_STATUS_EVENTS`.
    """

    def __init__(self, db, cfg, client, *, public_url: str, from_number: str,
                 now: Callable[[], datetime], sleep: Callable[[float], object] = time.sleep,
                 rules=None, draw_id: int | None = None, name: str | None = None,
                 notice_lead: timedelta = timedelta(hours=1), max_429_retries: int = 6,
                 backoff_seconds: float = 1.0, status_events: Sequence[str] = STATUS_EVENTS):
        import os
        import socket

        events = tuple(status_events)
        unknown = [e for e in events if e not in STATUS_EVENTS]
        if unknown:
            raise ValueError(f"status_events: {unknown[0]!r} is not one of {STATUS_EVENTS}")
        missing = [e for e in REQUIRED_STATUS_EVENTS if e not in events]
        if missing:
            raise ValueError(f"status_events must include {missing[0]!r} "
                             f"(the application needs {REQUIRED_STATUS_EVENTS}), got {events}")

        self.db = db
        self.cfg = cfg
        self.client = client
        self.rules = rules or cfg.calling
        self.urls = live.Urls(public_url.rstrip("/"))
        self.from_number = from_number
        self.now = now
        self.sleep = sleep
        self.draw_id = draw_id
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.notice_lead = notice_lead
        self.max_429_retries = max_429_retries
        self.backoff_seconds = backoff_seconds
        self.status_events = list(events)
        self.progress = Progress()
        self._next_notice_check: datetime | None = None
        #: when this dialer last placed a call: no dialer may place the next one
        #: before ``1 / calls_per_second`` after it (any dialer's is at least as late)
        self._last_dial: datetime | None = None
        self._next_due_query = None  # built on first use (next_due)
        self._ensure_lease()

    # --- coordination ----------------------------------------------------------------

    def _ensure_lease(self) -> None:
        with self.db.session() as s:
            if s.get(Lease, PACING_LEASE) is not None:
                return
            s.add(Lease(name=PACING_LEASE, holder=None, state={}))
            try:
                s.commit()
            except IntegrityError:  # another dialer created it first
                s.rollback()

    def _lock_pacing(self, s, now: datetime) -> dict:
        """Lock the pacing row until the transaction ends; returns its state."""
        return s.connection().execute(_LOCK_PACING, {"now": now}).scalar_one() or {}

    def open_attempts(self, s) -> int:
        return s.connection().execute(_OPEN_ATTEMPTS).scalar() or 0

    def next_due(self, s, now: datetime) -> datetime | None:
        """When the next case becomes due (``now`` if one is due), or None.

        The cases counted are those :func:`minping.cases.due_for_ivr` admits at some
        time: the ones left to interviewers (refusal conversion, reassigned, with an
        appointment, CATI-first not tried yet) are not waited for, as the dialer will
        not take them when their time comes; a case held now counts.
        """
        if self._next_due_query is None:
            self._next_due_query = (
                select(func.count().filter(SampleCase.next_attempt_at.is_(None)),
                       func.min(SampleCase.next_attempt_at))
                .where(*self._some_time_due()))
        row = s.execute(self._next_due_query).one()
        if row[0]:
            return now
        return row[1]

    def _some_time_due(self) -> list:
        # due_for_ivr at a moment after every time and hold of the field period
        cond = [cases.due_for_ivr(_EVER, max_attempts=self.rules.max_attempts)]
        if self.draw_id is not None:
            cond.append(SampleCase.draw_id == self.draw_id)
        return cond

    # --- one step ----------------------------------------------------------------------

    def step(self, *, max_calls: int = 50) -> StepResult:
        """Place calls until a limit stops it (at most ``max_calls``)."""
        placed = 0
        self._send_notices()
        while True:
            claim = self._claim()
            if isinstance(claim, StepResult):
                return StepResult(placed, claim.blocked, claim.wait_until, claim.in_flight,
                                  claim.quiet_until)
            on_line = self._place(*claim)
            placed += 1
            in_flight = claim[-1]
            if on_line and in_flight >= self.rules.max_concurrent_calls:
                # known without asking the database again: the limit is reached
                return StepResult(placed, "concurrency", None, in_flight)
            ready = self._ready_after_own_dial()
            if ready is not None and self._last_dial <= self.now() < ready:
                return StepResult(placed, "rate", ready, in_flight)
            if placed >= max_calls:
                return StepResult(placed, "rate", self.now(), in_flight)

    def idle_again(self, previous: StepResult) -> StepResult | None:
        """The result :meth:`step` would give now, if the database has not changed.

        The caller vouches that nothing changed the database since ``previous``, an
        ``"idle"`` step (in :func:`ivr.fieldwork.drive` no webhook request was sent
        since).  Before ``previous.quiet_until``, inside the calling window, that
        step would find no case again and change nothing but the SMS-notice check's
        next time, set here as it would set it; returns None when a real step is
        needed.
        """
        now = self.now()
        if (previous.blocked != "idle" or previous.quiet_until is None
                or now >= previous.quiet_until or not calling.is_allowed(self.rules, now)):
            return None
        if self.cfg.ivr.sms_advance_notice and (self._next_notice_check is None
                                                or now >= self._next_notice_check):
            self._next_notice_check = now + timedelta(minutes=1)  # no case is due
        return previous

    def _ready_after_own_dial(self) -> datetime | None:
        if self._last_dial is None:
            return None
        return self._last_dial + timedelta(seconds=1.0 / self.rules.calls_per_second)

    def _claim(self):
        now = self.now()
        ready = self._ready_after_own_dial()
        if (ready is not None and self._last_dial <= now < ready
                and calling.is_allowed(self.rules, now)):
            # this dialer's own last call already says "not yet" (others' can only be
            # later); a clock set back falls through to the pacing row
            return StepResult(0, "rate", ready, self.progress.in_flight)
        with self.db.transaction() as s:
            now = self.now()
            if not calling.is_allowed(self.rules, now):
                in_flight = self.open_attempts(s)
                self.progress.in_flight = in_flight
                nxt = calling.next_allowed(self.rules, now)
                if nxt is None and in_flight == 0:
                    return StepResult(0, "done", None, 0)
                return StepResult(0, "window", nxt, in_flight)
            last = self._lock_pacing(s, now).get("last_dial")
            if last:
                ready = datetime.fromisoformat(last) + timedelta(
                    seconds=1.0 / self.rules.calls_per_second)
                if now < ready:
                    return StepResult(0, "rate", ready, self.progress.in_flight)
            in_flight = self.open_attempts(s)
            self.progress.in_flight = in_flight
            if in_flight >= self.rules.max_concurrent_calls:
                return StepResult(0, "concurrency", None, in_flight)
            # the attempt starts now, after the count: an attempt that another dialer or a
            # webhook closed while this one waited for the pacing row ended before it
            # (stamping the time read before the wait would make the two overlap on record)
            now = max(now, self.now())
            held = cases.hold_cases_for_ivr(s, now=now, limit=1,
                                            max_attempts=self.rules.max_attempts,
                                            draw_id=self.draw_id)
            if not held:
                due = self.next_due(s, now)
                if due is None and in_flight == 0:
                    return StepResult(0, "done", None, 0)
                quiet = QUIET_FOREVER if due is None else due if due > now else None
                if due is not None and due <= now:  # due, but held elsewhere
                    due = now + timedelta(seconds=30)
                return StepResult(0, "idle", due, in_flight, quiet)
            case = held[0]
            # learned call times: a never-tried case waits for its stratum's best time
            # (its hold released, next_attempt_at set); the next due case is tried at once
            if calltimes.defer_first_attempt(s, self.rules, case, now=now) is not None:
                return StepResult(0, "idle", now, in_flight)
            attempt = cases.start_attempt(s, case, channel="ivr", now=now)
            conn = s.connection()
            conn.execute(_STAMP_PACING, {"pacing": {"last_dial": now.isoformat(), "by": self.name},
                                         "holder": self.name})
            self._last_dial = now
            phone = conn.execute(_PHONE, {"contact_id": case.contact_id}).scalar()
            return case.id, attempt.id, phone, in_flight + 1

    def _place(self, case_id: int, attempt_id: int, phone: str, in_flight: int) -> bool:
        """Place the claimed call; True if the gateway took it (False: attempt closed)."""
        if not calling.is_allowed(self.rules, self.now()):  # the window closed while claiming
            self._fail(attempt_id, "the calling window closed before the call was placed",
                       status="canceled")
            return False
        error = None
        for tries in range(self.max_429_retries + 1):
            try:
                call = self.client.calls.create(
                    **({"byoc": self.cfg.ivr.byoc_trunk_sid} if self.cfg.ivr.byoc_trunk_sid
                       else {}),
                    to=phone, from_=self.from_number, url=self.urls.voice(attempt_id),
                    method="POST", status_callback=self.urls.status(attempt_id),
                    status_callback_method="POST", status_callback_event=self.status_events,
                    timeout=self.rules.ring_timeout_seconds,
                    time_limit=self.rules.call_time_limit_seconds,
                    machine_detection="Enable", async_amd="true",
                    async_amd_status_callback=self.urls.amd(attempt_id),
                    async_amd_status_callback_method="POST")
            except TwilioRestException as exc:
                if exc.status == 429 and tries < self.max_429_retries:
                    self.progress.retried_429 += 1
                    self.sleep(self.backoff_seconds * 2**tries)
                    continue
                error = f"Twilio error {exc.code or ''} (HTTP {exc.status}): {exc.msg}"
                break
            except (TwilioException, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
            else:
                with self.db.transaction() as s:
                    attempt = s.get(CallAttempt, attempt_id)
                    if attempt.call_sid is None:
                        attempt.call_sid = call.sid
                    cases.add_event(s, attempt, "placed", now=self.now(),
                                    payload={"call_sid": call.sid, "to": phone,
                                             "tries": tries + 1, "dialer": self.name})
                self.progress.placed += 1
                self.progress.in_flight = in_flight
                log.info("call placed", extra={"case_id": case_id, "attempt_id": attempt_id,
                                               "call_sid": call.sid})
                return True
        self._fail(attempt_id, error or "HTTP 429: too many retries")
        return False

    def _fail(self, attempt_id: int, error: str, *, status: str = "failed") -> None:
        self.progress.errors += status == "failed"
        log.warning("call not placed: %s", error, extra={"attempt_id": attempt_id})
        with self.db.transaction() as s:
            attempt = s.get(CallAttempt, attempt_id)
            cases.add_event(s, attempt, "error", now=self.now(), payload={"error": error})
            callstate.close_attempt(s, self.cfg, attempt, call_status=status, now=self.now(),
                                  error=error)

    # --- SMS advance notice -------------------------------------------------------------

    def _send_notices(self, limit: int = 20) -> int:
        if not self.cfg.ivr.sms_advance_notice:
            return 0
        now = self.now()
        if not calling.is_allowed(self.rules, now):
            return 0
        if self._next_notice_check is not None and now < self._next_notice_check:
            return 0
        sent = 0
        with self.db.transaction() as s:
            query = (select(SampleCase.id, FrameContact.phone, SampleCase.language)
                     .join(FrameContact, FrameContact.id == SampleCase.contact_id)
                     .where(cases.due_for_ivr(now, max_attempts=self.rules.max_attempts),
                            SampleCase.attempts == 0, SampleCase.notified_at.is_(None))
                     .order_by(SampleCase.id).limit(limit))
            if self.draw_id is not None:
                query = query.where(SampleCase.draw_id == self.draw_id)
            rows = s.execute(query).all()
            claimed = []
            for case_id, phone, lang in rows:
                code = inbound.new_sms_code(self.cfg)
                done = s.execute(update(SampleCase).where(
                    SampleCase.id == case_id, SampleCase.notified_at.is_(None)).values(
                    notified_at=now, next_attempt_at=now + self.notice_lead, sms_code=code)
                    .execution_options(synchronize_session=False))
                if done.rowcount == 1:
                    claimed.append((case_id, phone, lang, code))
            if not rows:  # nobody left to notify: look again in a minute
                self._next_notice_check = now + timedelta(minutes=1)
        for case_id, phone, lang, code in claimed:
            lang = lang if lang in self.cfg.languages else self.cfg.campaign.default_language
            body = self.cfg.render_prompt("sms_advance_notice", lang, caller_id=self.from_number,
                                          code=code or "")
            try:
                sender = ({"messaging_service_sid": self.cfg.ivr.messaging_service_sid}
                          if self.cfg.ivr.messaging_service_sid else {"from_": self.from_number})
                self.client.messages.create(to=phone, body=body, **sender)
                sent += 1
            except (TwilioException, OSError) as exc:
                with self.db.transaction() as s:
                    s.add(AuditLog(at=now, actor="ivr-dialer", action="case.sms_failed",
                                   entity="case", entity_id=str(case_id), detail=str(exc)[:500]))
        self.progress.notices += sent
        return sent + (self._send_notices(limit) if len(rows) == limit else 0)

    # --- reconciliation ---------------------------------------------------------------

    def reconcile(self, *, older_than: timedelta = timedelta(0)) -> int:
        """Close open IVR attempts the gateway says are over; returns how many closed.

        Run on start (a dialer or the web app may have stopped while calls were in
        flight, and their final callbacks may never come).  An attempt without a
        CallSid older than two minutes never reached the gateway: it is closed as
        a technical problem.  Expired holds are cleared too.
        """
        now = self.now()
        closed = 0
        with self.db.session() as s:
            stale = s.execute(select(CallAttempt.id, CallAttempt.call_sid, CallAttempt.started_at)
                              .where(CallAttempt.channel == "ivr",
                                     CallAttempt.outcome.is_(None),
                                     CallAttempt.started_at <= now - older_than)).all()
        for attempt_id, sid, started in stale:
            if sid is None:
                if now - started > timedelta(minutes=2):
                    self._fail(attempt_id, "no call was placed (the dialer stopped first)")
                    closed += 1
                continue
            try:
                call = self.client.calls(sid).fetch()
            except TwilioRestException as exc:
                if exc.status == 404:
                    self._fail(attempt_id, f"the gateway does not know call {sid}")
                    closed += 1
                continue
            except (TwilioException, OSError) as exc:
                log.warning("reconcile %s: %s", sid, exc)
                continue
            if live.STATUS_RANK.get(call.status) != live.FINAL_RANK:
                continue
            with self.db.transaction() as s:
                attempt = s.get(CallAttempt, attempt_id)
                cases.add_event(s, attempt, "reconciled", now=now,
                                payload={"status": call.status, "answered_by": call.answered_by})
                duration = int(call.duration) if call.duration else None
                callstate.close_attempt(s, self.cfg, attempt, call_status=call.status,
                                      answered_by=call.answered_by, duration=duration, now=now)
            closed += 1
        with self.db.transaction() as s:
            cases.reap_expired_holds(s, now=now)
        return closed

    # --- running until stopped ----------------------------------------------------------

    def refresh_progress(self) -> Progress:
        with self.db.session() as s:
            p = self.progress
            p.in_flight = self.open_attempts(s)
            p.closed = s.scalar(select(func.count()).select_from(CallAttempt).where(
                CallAttempt.channel == "ivr", CallAttempt.outcome.is_not(None))) or 0
            p.interviews = s.scalar(select(func.count()).select_from(CallAttempt).where(
                CallAttempt.channel == "ivr", CallAttempt.outcome.in_(("1.1", "1.2")))) or 0
        return self.progress

    def run(self, stop: threading.Event, *, on_progress: Callable[[Progress], None] | None = None,
            max_wait: float = 5.0, progress_every: float = 1.0, until_done: bool = False) -> Progress:
        """Dial until ``stop`` is set (or, with ``until_done``, until nothing is left).

        Waits between steps with ``stop.wait`` (real time), at most ``max_wait``
        seconds.  Stopping never loses state: everything is in the database, and
        calls in flight finish at the gateway; their callbacks reach the web app.
        """
        self.reconcile()
        last_progress = 0.0
        last_reconcile = self.now()
        stale_age = timedelta(seconds=self.rules.ring_timeout_seconds
                              + self.rules.call_time_limit_seconds + 120)
        while not stop.is_set():
            result = self.step()
            if on_progress and time.monotonic() - last_progress >= progress_every:
                on_progress(self.refresh_progress())
                last_progress = time.monotonic()
            if self.now() - last_reconcile > timedelta(minutes=5):
                self.reconcile(older_than=stale_age)
                last_reconcile = self.now()
            if result.blocked == "done" and until_done:
                break
            if result.placed:
                continue
            wait = max_wait
            if result.wait_until is not None:
                wait = min(max_wait, max(0.01, (result.wait_until - self.now()).total_seconds()))
            elif result.blocked == "concurrency":
                # a line frees up when some call ends: look again soon
                wait = min(max_wait, CONCURRENCY_POLL_SECONDS)
            stop.wait(wait)
        if on_progress:
            on_progress(self.refresh_progress())
        return self.progress
