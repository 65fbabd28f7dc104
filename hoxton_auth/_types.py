"""Type aliases of the constructor's arguments, for type checkers only.

Every module imports this one under ``if TYPE_CHECKING:`` and nowhere else, so
it never loads at run time, where annotations stay unevaluated strings (``from
__future__ import annotations``). The keyword arguments themselves are
declared once, in the ``TypedDict``s of ``_arguments.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

from ._cache import TokenCache
from ._session import TokenInfo

__all__ = [
    "CacheArg",
    "CertArg",
    "OnToken",
    "OtherOrigins",
    "PathArg",
    "PrivateKeyArg",
    "RequestFormat",
    "ScopeArg",
    "SealingMode",
    "SigningAlgorithm",
    "VerifyArg",
]

#: ``scope=``: a space separated string or a sequence of scopes.
ScopeArg = str | Sequence[str] | None
PathArg = str | os.PathLike[str]
#: ``verify=``: True, False, or a CA bundle (file or directory).
VerifyArg = bool | PathArg
#: ``cert=``: one PEM file with certificate and key, or a ``(certificate, key)`` pair.
CertArg = PathArg | tuple[PathArg, PathArg] | None
#: ``private_key=``: a PEM file's path, or PEM text or bytes (``_client_key.py``).
PrivateKeyArg = str | bytes | os.PathLike[str]
#: ``cache=``: a ``TokenCache``, a path, a ``redis://`` URL, or None (also ``DEFAULT``).
CacheArg = TokenCache | str | os.PathLike[str] | None
#: ``token_request_format=``.
RequestFormat = Literal["form", "json"]
#: ``signing_algorithm=``: of the client assertion (Private Key JWT).
SigningAlgorithm = Literal["RS256", "RS384", "PS256", "ES256", "ES384"]
#: ``other_origins=``: what a request to another origin than the API's gets.
OtherOrigins = Literal["warn", "raise"]
#: ``FileTokenCache(sealing=)``: seal with the OS keyring, or fail closed, or never.
SealingMode = Literal["auto", "required", "off"]
#: ``on_token=``: called after each fetch or refresh, with no secret.
OnToken = Callable[[TokenInfo], None]
