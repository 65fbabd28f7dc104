"""The exception tree: shape, attributes and the module docstring that documents it."""

from __future__ import annotations

import pytest

import hoxton_auth
from hoxton_auth import (
    CacheError,
    ConfigError,
    HoxtonAuthError,
    InvalidGrantError,
    LoginError,
    LoginRequiredError,
    MfaRequiredError,
    NotLoggedInError,
    TokenEndpointUnreachableError,
    TokenRequestError,
    _errors,
)

TREE = [
    (ConfigError, (HoxtonAuthError, ValueError)),
    (TokenRequestError, (HoxtonAuthError,)),
    (InvalidGrantError, (TokenRequestError,)),
    (LoginRequiredError, (InvalidGrantError, TokenRequestError, HoxtonAuthError)),
    (MfaRequiredError, (TokenRequestError, HoxtonAuthError)),
    (TokenEndpointUnreachableError, (HoxtonAuthError,)),
    (LoginError, (HoxtonAuthError,)),
    (NotLoggedInError, (LoginError, HoxtonAuthError)),
    (CacheError, (HoxtonAuthError, OSError)),
]


@pytest.mark.parametrize(("error", "bases"), TREE, ids=[e.__name__ for e, _ in TREE])
def test_tree(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert issubclass(error, base)
    assert issubclass(error, HoxtonAuthError)
    assert error.__name__.endswith("Error")
    assert error.__doc__


def test_branches_do_not_overlap() -> None:
    # Catching one kind of failure must not swallow another.
    assert not issubclass(TokenEndpointUnreachableError, TokenRequestError)
    assert not issubclass(ConfigError, TokenRequestError)
    assert not issubclass(CacheError, ValueError)
    assert not issubclass(TokenRequestError, (ValueError, OSError))


def test_module_docstring_shows_the_tree() -> None:
    doc = _errors.__doc__ or ""
    for error, _ in TREE:
        assert error.__name__ in doc
    assert "HoxtonAuthError" in doc


def test_every_error_is_public() -> None:
    for name in _errors.__all__:
        assert getattr(hoxton_auth, name) is getattr(_errors, name)


def test_token_request_error_defaults() -> None:
    error = TokenRequestError("boom")
    assert str(error) == "boom"
    assert error.status_code == 0
    assert error.error is None
    assert error.error_description is None
    assert error.url == ""
    assert error.attempts == 1


def test_token_request_error_fields() -> None:
    error = LoginRequiredError(
        "invalid_grant: Unknown or invalid refresh token. (HTTP 403)",
        status_code=403,
        error="invalid_grant",
        error_description="Unknown or invalid refresh token.",
        url="https://auth.example/oauth/token",
        attempts=2,
    )
    assert error.status_code == 403
    assert error.error == "invalid_grant"
    assert error.error_description == "Unknown or invalid refresh token."
    assert error.url == "https://auth.example/oauth/token"
    assert error.attempts == 2
    assert "Unknown or invalid refresh token." in str(error)


def test_unreachable_error_fields() -> None:
    error = TokenEndpointUnreachableError("down", url="https://a.example/oauth/token", attempts=5)
    assert str(error) == "down"
    assert error.url == "https://a.example/oauth/token"
    assert error.attempts == 5


def test_config_error_is_caught_as_value_error() -> None:
    with pytest.raises(ValueError, match="client_id"):
        raise ConfigError("client_id is required")


def test_cache_error_is_caught_as_os_error() -> None:
    with pytest.raises(OSError, match="lock"):
        raise CacheError("lock stuck")


def test_mfa_required_error_masks_its_token() -> None:
    error = MfaRequiredError(
        "mfa_required: Multifactor authentication required (HTTP 403)",
        mfa_token="mfa-secret-token-0042",
        mfa_requirements={"challenge": [{"type": "otp"}]},
        status_code=403,
        error="mfa_required",
    )
    assert error.mfa_token == "mfa-secret-token-0042"
    assert "mfa-secret-token-0042" not in repr(error)
    assert "mfa-secret-token-0042" not in str(error)
    assert "***" in repr(error)
    assert error.retry_after is None
    assert not isinstance(error, InvalidGrantError)


def test_retry_after_is_carried() -> None:
    assert TokenRequestError("x", status_code=429, retry_after=12.5).retry_after == 12.5
    unreachable = TokenEndpointUnreachableError("x", url="u", attempts=1, retry_after=3.0)
    assert unreachable.retry_after == 3.0


def test_hoxton_auth_warning_is_a_user_warning() -> None:
    assert issubclass(hoxton_auth.HoxtonAuthWarning, UserWarning)
    assert "HoxtonAuthWarning" in (_errors.__doc__ or "")


def test_not_logged_in_is_no_token_request_error() -> None:
    """Raised where no request was made (STYLE.md section 5): not a TokenRequestError."""
    assert not issubclass(NotLoggedInError, TokenRequestError)
    assert not issubclass(LoginRequiredError, NotLoggedInError)
