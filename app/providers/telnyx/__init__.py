"""Telnyx: TeXML instruction fetches signed with Ed25519, outbound calls through Call Control."""

from app.providers.spec import ProviderSpec
from app.providers.telnyx.adapter import TelnyxAdapter
from app.providers.telnyx.dialer import TelnyxDialer
from app.providers.telnyx.options import TelnyxOptions
from app.providers.telnyx.simulator import TelnyxSimulator

SPEC = ProviderSpec(
    "telnyx", TelnyxOptions, adapter=TelnyxAdapter, dialer=TelnyxDialer, simulator=TelnyxSimulator
)
