"""The `chat` pipeline's activities, `load_session` and `append_turn`, over the chat
sessions store (`stores.chats`); a session belongs to the workflow's client."""

from __future__ import annotations

import logging

from temporalio import activity

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import SwitchboardError

from ..shared.tasks import APPEND_TURN, LOAD_SESSION
from ..stores.chats import ChatSessions
from .activities import enter_job
from .outage import application_error

log = logging.getLogger(__name__)


class ChatActivities:
    """`load_session` and `append_turn`; the session belongs to the workflow's client."""

    def __init__(self, sessions: ChatSessions) -> None:
        self._sessions = sessions

    @activity.defn(name=LOAD_SESSION)
    async def load_session(self, session_id: str) -> jobs_pb2.ChatSession:
        """The session's window (its last k messages) as a ChatSession."""
        client_id = enter_job().client
        try:
            turns = await self._sessions.window(client_id, session_id)
        except SwitchboardError as e:
            raise application_error(e) from e
        log.info("chat window loaded", extra={"fields": {"messages": len(turns)}})
        return jobs_pb2.ChatSession(name=f"sessions/{session_id}", turns=turns)

    @activity.defn(name=APPEND_TURN)
    async def append_turn(self, session: jobs_pb2.ChatSession) -> None:
        """Appends the job's messages (`session.turns`) to the window and the transcript;
        a retry after an append that did happen appends nothing."""
        client_id = enter_job().client
        session_id = session.name.removeprefix("sessions/")
        try:
            first = await self._sessions.append(client_id, session_id, session.turns)
        except SwitchboardError as e:
            raise application_error(e) from e
        log.info("chat turn appended", extra={"fields": {"transcript_id": first}})
