"""Plivo: answer URLs signed with Signature V3, outbound calls through its REST API."""

from app.providers.plivo.adapter import PlivoAdapter
from app.providers.plivo.dialer import PlivoDialer
from app.providers.plivo.options import PlivoOptions
from app.providers.plivo.simulator import PlivoSimulator
from app.providers.spec import ProviderSpec

SPEC = ProviderSpec(
    "plivo", PlivoOptions, adapter=PlivoAdapter, dialer=PlivoDialer, simulator=PlivoSimulator
)
