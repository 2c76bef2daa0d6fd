"""Public exposure of the webhook listener: ngrok tunnels and Tailscale serve/funnel."""

from __future__ import annotations

from voicecall_server.exposure.base import Exposure, ExposureError
from voicecall_server.exposure.ngrok import NgrokTunnel
from voicecall_server.exposure.tailscale import TailscaleExposure, expose_command

__all__ = ["Exposure", "ExposureError", "NgrokTunnel", "TailscaleExposure", "expose_command"]
