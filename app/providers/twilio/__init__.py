"""Twilio: TwiML voice webhooks signed with HMAC, outbound calls through its REST API."""

from app.providers.spec import ProviderSpec
from app.providers.twilio.adapter import TwilioAdapter
from app.providers.twilio.dialer import TwilioDialer
from app.providers.twilio.options import TwilioOptions
from app.providers.twilio.simulator import TwilioSimulator

SPEC = ProviderSpec(
    "twilio", TwilioOptions, adapter=TwilioAdapter, dialer=TwilioDialer, simulator=TwilioSimulator
)
