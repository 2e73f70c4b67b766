"""Exotel: the Voicebot applet fetches its stream URL from this service, authenticated by a
secret in the URL (Exotel signs nothing); outbound calls through its Calls/connect API."""

from app.providers.exotel.adapter import ExotelAdapter
from app.providers.exotel.dialer import ExotelDialer
from app.providers.exotel.options import ExotelOptions
from app.providers.exotel.simulator import ExotelSimulator
from app.providers.spec import ProviderSpec

SPEC = ProviderSpec(
    "exotel", ExotelOptions, adapter=ExotelAdapter, dialer=ExotelDialer, simulator=ExotelSimulator
)
