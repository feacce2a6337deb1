"""Heleket merchant API: Cryptomus' protocol on its own base URL, https://api.heleket.com.

From doc.heleket.com: the same request format (POST with JSON, `merchant` and `sign` headers,
sign = md5(base64(body) + payment API key)), the same invoice endpoint and fields (/v1/payment: amount, currency,
order_id, network, url_callback, lifetime, to_currency), the same payment object and statuses, and webhooks to
url_callback carrying `sign` in the body. What differs is coded here: the name, the base URL, the environment
variables and the callback path (/webhooks/heleket). The docs we have name no webhook source address, so there is no
default allow-list: the signature decides, and HELEKET_WEBHOOK_IPS narrows the sources when the operator knows them.
"""
from __future__ import annotations

from services.gateways.cryptomus import CAPABILITIES, NETWORK_CODES, CryptomusGateway, CryptomusSettings, builder
from services.gateways.spec import GatewaySpec

NAME = "heleket"


class HeleketSettings(CryptomusSettings):
    gateway = NAME
    title = "Heleket"
    prefix = "HELEKET"
    default_api_url = "https://api.heleket.com"


class HeleketGateway(CryptomusGateway):
    name = NAME
    title = "Heleket"
    env_prefix = "HELEKET"


SPEC = GatewaySpec(name=NAME, title="Heleket", settings=HeleketSettings.from_env, build=builder(HeleketGateway),
                   network_codes=NETWORK_CODES, capabilities=CAPABILITIES)
