"""Retry policies: how many attempts a job gets and how long it waits between them, with real jitter.

A policy is chosen when the job is enqueued (the task's default, or the caller's override), and stored with
the job — ``max_attempts`` in its column, the backoff in a flag (``backfill:retry=<preset>`` or
``backfill:retry=custom:<initial>:<max>:<multiplier>:<jitter>``) — so it survives restarts and any backfill
worker applies the same one. When an attempt fails, :class:`RetryPlanner` (the core's ``retry_planner``
hook) reads the flag and sets the next ``run_at``: ``initial * multiplier^(attempt-1)`` seconds, capped at
``max``, then spread by ±``jitter`` so that jobs failing together do not retry together.

The ``graphile`` preset leaves the delay to the core, which applies Graphile's own ``exp(min(attempts, 10))``
seconds. Jobs without the flag (enqueued by Node, by SQL, or by the core's ``add_job``) get their task's
policy if it declares one, else the planner's default (the runner's is ``BACKFILL_DEFAULT_RETRY_POLICY``;
set it to ``graphile`` for Node's behaviour).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from tenacity import RetryCallState, wait_exponential

from backfill.core import ConfigurationError, Job, PayloadValidationError, PermanentFailure, RetryAfter, RetryDecision
from backfill.core.extension import SMALLINT_MAX, check_int, check_number, register_flag, value_of

# backfill:retry=<preset> or backfill:retry=custom:<numbers>; the prefix by name for the SQL that needs it.
RETRY = register_flag("retry", owner=__name__)
RETRY_FLAG_PREFIX = RETRY.prefix
_CUSTOM = "custom"
GRAPHILE_MAX_ATTEMPTS = 25  # Graphile's default max_attempts


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and backoff. Delays are seconds; ``jitter`` is a fraction (0.1 = ±10%).

    ``name`` is set for the presets; a policy built by hand is "custom" and travels with its numbers.
    ``graphile=True`` means "Graphile's own backoff" (the numbers are then unused).
    """

    max_attempts: int
    initial_delay: float = 1.0
    max_delay: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1
    name: str = _CUSTOM
    graphile: bool = False
    _wait: Callable[[RetryCallState], float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        must = f"an integer from 1 to {SMALLINT_MAX}"
        check_int("retry policy max_attempts", self.max_attempts, 1, SMALLINT_MAX, must=must)
        for label, value in (("initial_delay", self.initial_delay), ("max_delay", self.max_delay)):
            check_number(f"retry policy {label}", value, at_least=0, must="a non-negative number of seconds")
        if self.max_delay < self.initial_delay:
            raise ConfigurationError(
                f"retry policy max_delay ({self.max_delay}) must not be below initial_delay ({self.initial_delay})"
            )
        check_number("retry policy multiplier", self.multiplier, at_least=1, must="a number >= 1")
        check_number("retry policy jitter", self.jitter, at_least=0, below=1, must="a fraction from 0 to below 1")
        # tenacity's exponential wait is exactly the un-jittered curve: initial * multiplier^(n-1), capped.
        waiter = wait_exponential(multiplier=self.initial_delay, max=self.max_delay, exp_base=self.multiplier)
        object.__setattr__(self, "_wait", waiter)

    def base_delay(self, attempt: int) -> float:
        """Seconds before the attempt after failed attempt number ``attempt`` (1 = the first), before jitter."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return float(self._wait(state))

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """:meth:`base_delay` spread uniformly by ±``jitter``."""
        base = self.base_delay(attempt)
        spread = (rng or random).uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(0.0, base * (1.0 + spread))

    @property
    def flag(self) -> str:
        """The job flag that carries this policy's backoff."""
        if self.name != _CUSTOM:
            return RETRY.with_value(self.name)
        numbers = ":".join(f"{v:g}" for v in (self.initial_delay, self.max_delay, self.multiplier, self.jitter))
        return RETRY.with_value(f"{_CUSTOM}:{numbers}")


PRESETS: Mapping[str, RetryPolicy] = {
    "fast": RetryPolicy(3, 0.1, 30.0, 2.0, 0.10, name="fast"),
    "aggressive": RetryPolicy(12, 0.5, 600.0, 1.5, 0.15, name="aggressive"),
    "conservative": RetryPolicy(5, 5.0, 1800.0, 2.5, 0.20, name="conservative"),
    "default": RetryPolicy(8, 1.0, 300.0, 2.0, 0.10, name="default"),
    "graphile": RetryPolicy(GRAPHILE_MAX_ATTEMPTS, name="graphile", graphile=True),
}


def resolve_policy(policy: RetryPolicy | str, *, field_name: str = "retry_policy") -> RetryPolicy:
    """A policy object from a policy or a preset name."""
    if isinstance(policy, RetryPolicy):
        return policy
    if isinstance(policy, str) and policy in PRESETS:
        return PRESETS[policy]
    raise ConfigurationError(f"{field_name}: unknown retry policy {policy!r}; presets are {', '.join(PRESETS)}")


def policy_from_flags(flags: Collection[str] | None) -> RetryPolicy | None:
    """The policy a job carries in its flags, or ``None`` (no flag, or one this version cannot read)."""
    value = value_of(flags, RETRY)
    if value is None:
        return None
    if value in PRESETS:
        return PRESETS[value]
    kind, _, numbers = value.partition(":")
    if kind != _CUSTOM:
        return None
    try:
        initial, maximum, multiplier, jitter = (float(n) for n in numbers.split(":"))
        # max_attempts lives in the job's own column; the planner never needs it.
        return RetryPolicy(GRAPHILE_MAX_ATTEMPTS, initial, maximum, multiplier, jitter)
    except (ValueError, ConfigurationError):
        return None  # written by hand and unreadable: fall back as if there were no flag


@dataclass(frozen=True, slots=True)
class ErrorRules:
    """How errors are classified, by exception type (subclasses included; the first match wins):

    * ``permanent`` — fail the job now, straight to the dead-letter queue (a bad payload will not get better);
    * ``retry_after`` — retry after this many seconds instead of the policy's delay (a rate limit, say);
    * anything else is retried by the job's policy.

    Raising :class:`~backfill.core.errors.PermanentFailure` or :class:`~backfill.core.errors.RetryAfter` in a
    handler always works; so does :class:`~backfill.core.errors.PayloadValidationError` count as permanent.
    """

    permanent: tuple[type[BaseException], ...] = ()
    retry_after: Mapping[type[BaseException], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "permanent", tuple(self.permanent))
        for kind in (*self.permanent, *self.retry_after):
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ConfigurationError(f"error rules take exception classes, got {kind!r}")
        for kind, delay in self.retry_after.items():
            check_number(f"retry_after delay for {kind.__name__}", delay, at_least=0, must=">= 0 seconds")

    def decide(self, error: BaseException | None) -> RetryDecision | None:
        """The decision the error itself dictates, or ``None`` to let the policy decide."""
        if error is None:
            return None
        if isinstance(error, RetryAfter):
            return RetryDecision(delay=error.delay)
        if isinstance(error, (PermanentFailure, PayloadValidationError, *self.permanent)):
            return RetryDecision(permanent=True)
        for kind, delay in self.retry_after.items():
            if isinstance(error, kind):
                return RetryDecision(delay=delay)
        return None


class RetryPlanner:
    """The core ``retry_planner`` hook: error rules first, then the job's policy — its flag, else its task's,
    else ``default_policy`` (``None``: Graphile's backoff)."""

    def __init__(
        self,
        *,
        task_policies: Mapping[str, RetryPolicy] | Callable[[str], RetryPolicy | None] = {},  # noqa: B006 - read only
        rules: ErrorRules | None = None,
        default_policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._task_policy = task_policies.get if isinstance(task_policies, Mapping) else task_policies
        self._default_policy = default_policy  # for jobs without a flag whose task declares none
        self._rules = rules if rules is not None else ErrorRules()
        self._rng = rng

    def policy_for(self, job: Job) -> RetryPolicy | None:
        return policy_from_flags(job.flags) or self._task_policy(job.task_identifier) or self._default_policy

    def __call__(self, job: Job, error: BaseException | None) -> RetryDecision | None:
        decided = self._rules.decide(error)
        if decided is not None:
            return decided
        policy = self.policy_for(job)
        if policy is None or policy.graphile:
            return None
        return RetryDecision(delay=policy.delay(job.attempts, rng=self._rng))
