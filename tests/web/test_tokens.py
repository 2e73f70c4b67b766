"""Web call tokens: what `ultravox-bridge web-token` mints is what the service accepts."""

import time

import pytest

from app.cli import main
from app.web.tokens import TokenRefused, verify_token

SECRET = "web-call-secret-for-tests-0123456789abcdef"


def test_cli_mints_a_token_the_service_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("ULTRAVOX_API_KEY", "k")
    monkeypatch.setenv("WEB_CALL_SECRET", SECRET)
    assert main(["web-token", "--route", "sales", "--ttl", "120", "--subject", "user-7"]) == 0
    token = capsys.readouterr().out.strip()
    claims = verify_token(token, SECRET, "sales", max_ttl_seconds=600)
    assert (claims.route, claims.subject) == ("sales", "user-7")
    assert 118 <= claims.expires - time.time() <= 120


def test_cli_without_a_secret_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("ULTRAVOX_API_KEY", "k")
    monkeypatch.delenv("WEB_CALL_SECRET", raising=False)
    assert main(["web-token", "--route", "sales"]) == 2
    assert capsys.readouterr().err == "WEB_CALL_SECRET is not set: web calls need no token\n"


def test_payload_changed_after_signing_is_refused() -> None:
    from app.web.tokens import _b64, mint_token

    token = mint_token(SECRET, "sales", 60)
    signature = token.split(".")[1]
    forged_payload = _b64(b'{"route":"support","exp":9999999999}')
    with pytest.raises(TokenRefused, match="signature is not valid"):
        verify_token(f"{forged_payload}.{signature}", SECRET, "support", 600)
