"""The webhook URL policy: form, and every address the host resolves to (a fake resolver for
names that would need a DNS server; the system's for localhost)."""

from __future__ import annotations

import pytest

from wanserve.webhooks.urls import Destination, UrlPolicy, UrlRefused

NAMES = {
    "public.test": ["8.8.4.4"],
    "internal.test": ["10.0.0.5"],
    "rebind.test": ["8.8.4.4", "127.0.0.1"],  # one public answer beside a loopback one
    "metadata.test": ["169.254.169.254"],
    "mapped.test": ["::ffff:192.168.1.2"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise OSError(f"[Errno -2] Name or service not known: {host}")
    return NAMES[host]


def policy(allow_private: bool = False) -> UrlPolicy:
    return UrlPolicy(allow_private=allow_private, resolver=fake_resolver)


async def test_a_public_address_is_the_destination() -> None:
    found = await policy().resolve("https://public.test/hooks?x=1")
    assert found == Destination(
        "https://public.test/hooks?x=1", "https", "public.test", 443, "8.8.4.4"
    )
    found = await policy().resolve("http://8.8.4.4:8080/")
    assert (found.port, found.address) == (8080, "8.8.4.4")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://internal.test/h", "internal.test resolves to 10.0.0.5, a private address"),
        ("https://rebind.test/h", "resolves to 127.0.0.1, a loopback address"),
        ("https://metadata.test/h", "a link-local address"),
        ("https://mapped.test/h", "resolves to 192.168.1.2, a private address"),
        ("http://127.0.0.1:9/h", "127.0.0.1, a loopback address"),
        ("http://[::1]/h", "::1, a loopback address"),
        ("http://100.64.0.1/h", "a non-public address"),
        ("https://nowhere.test/h", "its host 'nowhere.test' does not resolve"),
        ("ftp://public.test/h", "must be an http:// or https:// URL"),
        ("https://user:pw@public.test/h", "must not carry credentials"),
        ("https:///h", "must name a host"),
        ("https://public.test:99999/h", "must be a well-formed URL"),
        ("https://public.test/a b", "must not contain spaces"),
    ],
)
async def test_non_public_destinations_and_malformed_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(UrlRefused, match=words.replace(".", r"\.").replace("(", r"\(")):
        await policy().resolve(url)


async def test_allow_private_admits_private_addresses_but_never_unspecified_or_multicast() -> None:
    allowing = policy(allow_private=True)
    assert (await allowing.resolve("https://internal.test/h")).address == "10.0.0.5"
    assert (await allowing.resolve("http://127.0.0.1:9/h")).address == "127.0.0.1"
    for url in ("http://0.0.0.0/h", "http://224.0.0.1/h"):
        with pytest.raises(UrlRefused, match="webhooks go to public addresses only"):
            await allowing.resolve(url)


async def test_the_system_resolver_resolves_localhost_to_a_refused_loopback_address() -> None:
    with pytest.raises(UrlRefused, match="localhost resolves to .*, a loopback address"):
        await UrlPolicy(allow_private=False).resolve("http://localhost:8000/hook")
    allowed = await UrlPolicy(allow_private=True).resolve("http://localhost:8000/hook")
    assert allowed.address in ("127.0.0.1", "::1") and allowed.host == "localhost"
