"""ksqlDB's URL functions: URL_ENCODE_PARAM / URL_DECODE_PARAM (Java's URLEncoder/URLDecoder,
form encoding: a space is '+') and URL_EXTRACT_* (the parts java.net.URI gives, decoded).

A part the URL does not have is null (URL_EXTRACT_PORT too); so is a null argument. Text that
is not a URL at all is null rather than an error.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, quote_plus, unquote, unquote_plus, urlsplit

from services.ksql_server import types as T
from services.ksql_server.functions.registry import const, register


@register("URL_ENCODE_PARAM", 1, 1, const(T.STRING))
def url_encode_param(text: str | None) -> str | None:
    """Java's URLEncoder: letters, digits and `.-*_` stay, a space is '+', the rest %XX."""
    if text is None:
        return None
    return quote_plus(text, safe="*").replace("~", "%7E")


@register("URL_DECODE_PARAM", 1, 1, const(T.STRING))
def url_decode_param(text: str | None) -> str | None:
    return None if text is None else unquote_plus(text)


def _split(url: str | None) -> SplitResult | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return None
    return parts


def _part(text: str) -> str | None:
    return unquote(text) if text else None


@register("URL_EXTRACT_PROTOCOL", 1, 1, const(T.STRING))
def url_extract_protocol(url: str | None) -> str | None:
    parts = _split(url)
    return None if parts is None or not parts.scheme else parts.scheme


@register("URL_EXTRACT_HOST", 1, 1, const(T.STRING))
def url_extract_host(url: str | None) -> str | None:
    parts = _split(url)
    return None if parts is None or not parts.hostname else parts.hostname


@register("URL_EXTRACT_PORT", 1, 1, const(T.INTEGER))
def url_extract_port(url: str | None) -> int | None:
    parts = _split(url)
    return None if parts is None else parts.port


@register("URL_EXTRACT_PATH", 1, 1, const(T.STRING))
def url_extract_path(url: str | None) -> str | None:
    parts = _split(url)
    return None if parts is None else unquote(parts.path)


@register("URL_EXTRACT_QUERY", 1, 1, const(T.STRING))
def url_extract_query(url: str | None) -> str | None:
    parts = _split(url)
    return None if parts is None else _part(parts.query)


@register("URL_EXTRACT_FRAGMENT", 1, 1, const(T.STRING))
def url_extract_fragment(url: str | None) -> str | None:
    parts = _split(url)
    return None if parts is None else _part(parts.fragment)


@register("URL_EXTRACT_PARAMETER", 2, 2, const(T.STRING))
def url_extract_parameter(url: str | None, name: str | None) -> str | None:
    """The decoded value of the first query parameter called `name`."""
    parts = _split(url)
    if parts is None or name is None:
        return None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == name:
            return value
    return None
