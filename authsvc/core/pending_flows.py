"""Sign-ins waiting for their second step that the server has ended.

A pending sign-in lives in the browser's signed session cookie (:class:`authsvc.core.login_flow.FlowState`),
so copies of that cookie would each carry it. Ending one is therefore recorded here, by the flow's
random id, in the rate-limit storage every instance shares, for as long as a flow can live
(``mfa.pending_seconds``): a flow that completed (each pending step signs in at most once) or was
ended for a sign of tampering (a copy presented by another browser) is refused wherever any copy
comes back. A storage failure raises :class:`authsvc.core.throttle.ThrottleUnavailable`: refused
with 503, like the throttle (fail closed).
"""

from __future__ import annotations

from limits.storage import Storage

from authsvc.core.throttle import ThrottleUnavailable


class EndedFlows:
    def __init__(self, storage: Storage, prefix: str, lifetime_seconds: int) -> None:
        self.storage = storage
        self.prefix = prefix
        self.lifetime_seconds = max(1, lifetime_seconds)

    def _key(self, flow_id: str) -> str:
        return f"{self.prefix}:flow-ended:{flow_id}"

    def end(self, flow_id: str) -> None:
        try:
            # Kept a little past the flow's own lifetime: a copy is refused until it would have expired anyway.
            self.storage.incr(self._key(flow_id), self.lifetime_seconds + 60)
        except Exception as exc:  # noqa: BLE001 - any storage client error: redis, timeouts, ...
            raise ThrottleUnavailable(type(exc).__name__) from None

    def ended(self, flow_id: str) -> bool:
        try:
            return self.storage.get(self._key(flow_id)) > 0
        except Exception as exc:  # noqa: BLE001 - as above
            raise ThrottleUnavailable(type(exc).__name__) from None
