"""Operations routes: liveness and the database's reachability."""

from fastapi import APIRouter

from leadloop.services.health import database_answers
from starter.http.deps import Sessions

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(sessions: Sessions) -> dict[str, str]:
    """Liveness and the database's reachability."""
    await database_answers(sessions)
    return {"status": "ok"}
