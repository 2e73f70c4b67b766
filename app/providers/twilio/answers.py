"""Twilio's answers in TwiML, built with the twilio SDK: the stream that connects a call to its
Ultravox call (the inbound webhook's answer and an outbound call's instructions alike), the
fallback and the refusal."""

from twilio.twiml.voice_response import Connect, VoiceResponse

from app.calltypes import FallbackPlan


def stream_twiml(join_url: str) -> str:
    """`<Response><Connect><Stream url=joinUrl/></Connect></Response>`."""
    connect = Connect()
    connect.stream(url=join_url)
    response = VoiceResponse()
    response.append(connect)
    return str(response.to_xml())


def fallback_twiml(plan: FallbackPlan) -> str:
    """Say the message, then dial the fallback number or hang up."""
    response = VoiceResponse()
    response.say(plan.message)
    if plan.dial_number:
        response.dial(plan.dial_number)
    else:
        response.hangup()
    return str(response.to_xml())


def reject_twiml() -> str:
    """Refuse the call unanswered."""
    response = VoiceResponse()
    response.reject(reason="rejected")
    return str(response.to_xml())
