"""An allowlisted inbound Plivo call is greeted and stays up for the conversation."""

from __future__ import annotations

from voicecall_client.v1 import voicecall_service_pb2 as pb

from .fakes_plivo import verbs
from .test_plivo import FRIEND, FROM, GREETING, Rig, bot_lines, make_rig, rig

__all__ = ["make_rig", "rig"]


async def test_inbound_allowlisted_is_answered_and_greeted(rig: Rig) -> None:
    cuuid, posted = await rig.carrier.inbound(FRIEND, FROM)
    assert posted.status == 200 and verbs(posted.body)[0] == "Speak" and GREETING in posted.body
    assert "Hangup" not in verbs(posted.body)
    (call,) = await rig.calls()
    assert call.direction == pb.CALL_DIRECTION_INBOUND and call.provider_call_id == cuuid
    assert call.state == pb.CALL_STATE_ANSWERED and bot_lines(call) == [GREETING]
    assert rig.carrier.calls[cuuid].deletes == 0
