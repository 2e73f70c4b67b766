"""Twilio's answers in TwiML: the stream that connects a call to its Ultravox call (the inbound
webhook's answer and an outbound call's instructions alike), the fallback and the refusal.

The fallback and the refusal are built with the twilio SDK. The stream, the answer to nearly
every webhook, is the SDK's output written as a string: building it through the SDK's element
tree cost about a tenth of a webhook's Python calls (bench/call_count.py). A test holds the two
to the same bytes for any join URL."""

from twilio.twiml.voice_response import VoiceResponse

from app.calltypes import FallbackPlan

# What the SDK's serialiser (xml.etree) escapes in an attribute's value.
_ATTRIBUTE = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\r": "&#13;",
        "\n": "&#10;",
        "\t": "&#09;",
    }
)


def stream_twiml(join_url: str) -> str:
    """`<Response><Connect><Stream url=joinUrl/></Connect></Response>`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f'<Stream url="{join_url.translate(_ATTRIBUTE)}" /></Connect></Response>'
    )


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
