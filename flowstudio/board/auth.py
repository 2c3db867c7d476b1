"""Who is asking: the bearer token's owner, by :class:`flowstudio.serve.auth.Tokens` (the job API's
token files and ``$FLOWSTUDIO_TOKENS``)."""

from __future__ import annotations

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flowstudio.board.context import Board, board_of
from flowstudio.serve.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="a token of the board's token file")


def owner_of(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer), board: Board = Depends(board_of)
) -> str:
    """The owner of the request's token (``""`` on an open board); 401 without a known token."""
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    owner = board.tokens.owner(header)
    if owner is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid token is needed: Authorization: Bearer <token>"
            if header
            else "no token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner
