"""A fake of the Telegram Bot API, served over real HTTP for tests.

Response shapes follow https://core.telegram.org/bots/api closely enough for
aiogram 3 to parse them into its types.  Point a bot at the fake with::

    api = FakeBotAPI()
    await api.start()
    bot = Bot("123:ABC", session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))

Every request is recorded as a :class:`BotCall`; sent messages are kept in
``api.messages`` so edits behave like Telegram (including the
"message is not modified" and "message to edit not found" errors).  Updates
are delivered through long-polling ``getUpdates`` after ``push_update()``.

A few checks that catch real bugs are applied like Telegram does: HTML
``parse_mode`` markup must use supported, balanced tags (the stored message
``text``/``caption`` is the rendered plain text, as Telegram returns it), text
and caption length limits, empty text, ``callback_data`` over 64 bytes and
inline buttons without an action.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import inspect
import itertools
import json
import mimetypes
import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Callable

import aiogram.methods as _aiogram_methods
from aiogram.types import Update
from aiohttp import web

__all__ = [
    "BOT_USER",
    "BotCall",
    "FakeBotAPI",
    "as_update",
    "bot_added_update",
    "migrated_update",
    "callback_update",
    "message_update",
]

# The bot account the fake pretends to be (getMe and the "from" of sent messages).
BOT_USER: dict[str, Any] = {
    "id": 1000,
    "is_bot": True,
    "first_name": "TopUp Test Bot",
    "username": "topup_test_bot",
}
_GET_ME: dict[str, Any] = {
    **BOT_USER,
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
    "can_connect_to_business": False,
    "has_main_web_app": False,
}

# lower-case name -> canonical camelCase name, for every method aiogram knows.
_CANONICAL: dict[str, str] = {
    obj.__api_method__.lower(): obj.__api_method__
    for obj in vars(_aiogram_methods).values()
    if inspect.isclass(obj) and isinstance(getattr(obj, "__api_method__", None), str)
}

# Form fields that carry free text: never JSON-decoded, even if they look like JSON.
_TEXT_FIELDS = frozenset(
    {
        "text", "caption", "data", "title", "description", "short_description",
        "query", "message", "name", "url", "payload", "start_parameter",
        "secret_token", "emoji", "question", "explanation", "first_name",
        "last_name", "address", "phone_number", "vcard", "custom_title",
        "callback_query_id", "inline_message_id", "parse_mode", "file_id",
        "language_code", "next_offset", "currency", "provider_token",
        "game_short_name", "ip_address", "sticker", "photo", "document", "video",
        "audio", "animation", "voice", "video_note", "thumbnail",
    }
)
_SCALAR_RE = re.compile(r"-?\d+(?:\.\d+)?|true|false")

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply "
    "markup are exactly the same as a current content and reply markup of the message"
)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    500: "Internal Server Error",
}
# Inline keyboard buttons must carry exactly one of these actions.
_BUTTON_ACTIONS = frozenset(
    {
        "url", "callback_data", "web_app", "login_url", "switch_inline_query",
        "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
        "copy_text", "callback_game", "pay",
    }
)
# Tags accepted by Telegram's HTML parse mode.
_HTML_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span",
        "tg-spoiler", "a", "code", "pre", "blockquote", "tg-emoji", "tg-time",
    }
)
_MAX_TEXT = 4096
_MAX_CAPTION = 1024


@dataclass
class BotCall:
    """One request received by the fake.

    ``params`` holds decoded parameters (nested JSON objects decoded, numeric
    ids as ints); ``files`` maps multipart part names to uploaded bytes, with
    the original file names in ``filenames``.  ``at`` is ``time.monotonic()``.
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    failed: bool = False
    token: str = ""
    filenames: dict[str, str] = field(default_factory=dict)
    status: int = 200
    result: Any = None  # the "result" returned on success
    error: str | None = None  # the "description" returned on failure

    def file(self, param: str) -> bytes | None:
        """Bytes uploaded for parameter ``param`` (resolves ``attach://`` references)."""
        value = self.params.get(param)
        if isinstance(value, str) and value.startswith("attach://"):
            return self.files.get(value.removeprefix("attach://"))
        return self.files.get(param)


class _ApiError(Exception):
    """Raised by method handlers to answer with a Telegram error envelope."""

    def __init__(self, status: int, description: str, retry_after: int | None = None,
                 migrate_to_chat_id: int | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None
    remaining: int


class FakeBotAPI:
    """In-process fake Telegram Bot API server (aiohttp.web)."""

    def __init__(self, *, rate_limit_per_second: float | None = None, answer_delay: float = 0.0) -> None:
        # When set, send* calls (except sendChatAction) beyond this many within a
        # sliding 1 s window are answered with 429 retry_after=1.
        self.rate_limit_per_second = rate_limit_per_second
        # Seconds between recording a send*/edit* (the message has arrived) and answering it: Telegram's round
        # trip, the window in which a sender that dies has delivered a message without knowing it.
        self.answer_delay = answer_delay
        self.base_url: str = ""
        self.calls: list[BotCall] = []
        self.tokens: set[str] = set()
        self.messages: dict[tuple[int | str, int], dict[str, Any]] = {}
        self.chat_admins: dict[int, list[int]] = {}  # chat_id -> [owner, admin, ...]
        self.commands: list[dict[str, Any]] = []  # last setMyCommands payload
        self.webhook_url = ""  # set by setWebhook, cleared by deleteWebhook, as getWebhookInfo reports it
        self.uploads: dict[str, tuple[str, bytes]] = {}  # file_id -> (filename, bytes)
        # A group upgraded to a supergroup: old id -> new id. Any call naming the old id gets Telegram's 400 with
        # parameters.migrate_to_chat_id, as the real API answers.
        self.migrated_chats: dict[int, int] = {}
        # setMyDescription / setMyShortDescription, by language_code ("" for the default).
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}

        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int | str, itertools.count] = {}
        self._file_ids = itertools.count(1)
        self._file_paths: dict[str, str] = {}  # file_id -> file_path
        self._raw: dict[tuple[int | str, int], str | None] = {}  # raw text/caption as sent
        self._faults: dict[str, collections.deque[_Fault]] = {}
        self._send_times: collections.deque[float] = collections.deque()
        self._updates_event = asyncio.Event()
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[dict[str, Any], BotCall], Any]] = {
            "getme": lambda p, c: dict(_GET_ME),
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "sendphoto": lambda p, c: self._send_media(p, c, "photo"),
            "senddocument": lambda p, c: self._send_media(p, c, "document"),
            "editmessagetext": self._edit_text,
            "editmessagecaption": self._edit_caption,
            "editmessagereplymarkup": self._edit_reply_markup,
            "editmessagemedia": self._edit_media,
            "deletemessage": self._delete_message,
            "getchatadministrators": self._get_chat_administrators,
            "getchatmember": self._get_chat_member,
            "getchat": self._get_chat,
            "getfile": self._get_file,
            "setmycommands": self._set_my_commands,
            "getmycommands": lambda p, c: list(self.commands),
            "setmydescription": lambda p, c: self._set_description(p, self.descriptions, "description", 512),
            "setmyshortdescription": lambda p, c: self._set_description(
                p, self.short_descriptions, "short_description", 120),
            "getmydescription": lambda p, c: {
                "description": self.descriptions.get(str(p.get("language_code") or ""), "")},
            "getmyshortdescription": lambda p, c: {
                "short_description": self.short_descriptions.get(str(p.get("language_code") or ""), "")},
            "deletemycommands": self._delete_my_commands,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": lambda p, c: {
                "url": self.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": 0,
            },
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns and sets ``self.base_url``."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._closing = False
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        real_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{real_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; pending long-polls return immediately."""
        self._closing = True
        self._updates_event.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ test controls

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; assigns ``update_id`` when missing.

        Bot messages embedded in callback queries are registered in
        ``self.messages`` (if unknown) so handlers can edit them.
        Returns the queued update dict.
        """
        update = dict(update)
        if "update_id" in update:
            # keep our counter ahead of explicit ids
            nxt = next(self._update_ids)
            self._update_ids = itertools.count(max(nxt, update["update_id"] + 1))
        else:
            update["update_id"] = next(self._update_ids)
        self.register_update(update)
        self._updates.append(update)
        self._updates_event.set()
        self._notify()
        return update

    def push_message(self, user_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
        """``push_update(message_update(user_id, text, **kwargs))``."""
        return self.push_update(message_update(user_id, text, **kwargs))

    def push_callback(
        self,
        user_id: int,
        data: str,
        *,
        message_id: int | None = None,
        chat_id: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Press an inline button: push a callback query about a stored bot message.

        ``message_id`` defaults to the last message the bot sent to the chat;
        the message's current text and keyboard are embedded in the update.
        """
        chat_id = user_id if chat_id is None else chat_id
        if message_id is None:
            sent = [mid for (cid, mid) in self.messages if cid == chat_id]
            if not sent:
                raise LookupError(f"no bot message stored for chat {chat_id}")
            message_id = sent[-1]
        stored = self.messages.get((chat_id, message_id), {})
        kwargs.setdefault("text", stored.get("text", stored.get("caption", "menu")))
        kwargs.setdefault("reply_markup", stored.get("reply_markup"))
        return self.push_update(
            callback_update(user_id, data, message_id=message_id, chat_id=chat_id, **kwargs)
        )

    def register_update(self, update: dict[str, Any]) -> None:
        """Store bot-authored messages embedded in an update (callback_query.message)
        unless already known; useful before ``dp.feed_update`` without polling."""
        msg = (update.get("callback_query") or {}).get("message")
        if not msg or not (msg.get("from") or {}).get("is_bot"):
            return
        key = (msg["chat"]["id"], msg["message_id"])
        if key not in self.messages:
            self.messages[key] = copy.deepcopy(msg)
            self._raw[key] = msg.get("text", msg.get("caption"))

    def pending_update_count(self) -> int:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        return len(self._updates)

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """Make the next ``count`` calls of ``method`` fail with a Telegram error.

        For status 429 ``retry_after`` defaults to 1 (as Telegram always sends it).
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            else:
                description = _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}")
        fault = _Fault(status, description, retry_after, count)
        self._faults.setdefault(method.lower(), collections.deque()).append(fault)

    # ------------------------------------------------------------ inspection

    def calls_of(self, method: str, *, include_failed: bool = False) -> list[BotCall]:
        """Recorded calls of ``method`` (case-insensitive); successful only by default."""
        low = method.lower()
        return [
            c
            for c in self.calls
            if c.method.lower() == low and (include_failed or not c.failed)
        ]

    def sent_to(self, chat_id: int | str) -> list[dict[str, Any]]:
        """Copies of the messages currently stored for ``chat_id``, in send order."""
        return [copy.deepcopy(m) for (cid, _), m in self.messages.items() if cid == chat_id]

    def mark(self) -> int:
        """Current number of recorded calls, for ``wait_for_call(since=...)``."""
        return len(self.calls)

    async def wait_for(self, predicate: Callable[[FakeBotAPI], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate(self)`` is truthy (re-checked after each call); return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed  # grab before checking, so no change is missed
            value = predicate(self)
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"FakeBotAPI.wait_for timed out after {timeout}s; "
                    f"last calls:\n{self.describe_calls()}"
                )
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[BotCall], Any] = lambda call: True,
        timeout: float = 5.0,
        *,
        since: int | None = None,
        include_failed: bool = False,
    ) -> BotCall:
        """First call of ``method`` matching ``predicate`` among ``self.calls[since:]``
        (all calls when ``since`` is None), waiting for it if needed."""
        low = method.lower()
        start = since or 0

        def find(api: FakeBotAPI) -> BotCall | None:
            for call in api.calls[start:]:
                if call.method.lower() == low and (include_failed or not call.failed):
                    if predicate(call):
                        return call
            return None

        try:
            return await self.wait_for(find, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no matching {method} call within {timeout}s; "
                f"last calls:\n{self.describe_calls()}"
            ) from None

    def describe_calls(self, last: int = 15) -> str:
        """Human-readable summary of the last recorded calls (for failure messages)."""
        if not self.calls:
            return "  (no calls recorded)"
        lines = []
        for call in self.calls[-last:]:
            params = {k: v for k, v in call.params.items() if k not in ("reply_markup",)}
            text = json.dumps(params, ensure_ascii=False, default=str)
            if len(text) > 160:
                text = text[:157] + "..."
            flag = f" FAILED {call.status}: {call.error}" if call.failed else ""
            lines.append(f"  {call.method} {text}{flag}")
        return "\n".join(lines)

    # ------------------------------------------------------------ HTTP layer

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _handle_api(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()  # stamped on arrival: parsing a large upload must not make a call look later
        token = request.match_info["token"]
        sent_name = request.match_info["method"]
        method = _CANONICAL.get(sent_name.lower(), sent_name)
        params, files, filenames = await _parse_request(request)
        self.tokens.add(token)
        call = BotCall(
            method=method,
            params=params,
            files=files,
            at=arrived,
            token=token,
            filenames=filenames,
        )
        try:
            self._check_faults(method)
            self._check_migrated(params)
            result = self._handlers.get(method.lower(), self._default)(params, call)
            if inspect.isawaitable(result):
                result = await result
        except _ApiError as exc:
            call.failed, call.status, call.error = True, exc.status, exc.description
            body: dict[str, Any] = {
                "ok": False,
                "error_code": exc.status,
                "description": exc.description,
            }
            if exc.retry_after is not None:
                body["parameters"] = {"retry_after": exc.retry_after}
            if exc.migrate_to_chat_id is not None:
                body["parameters"] = {"migrate_to_chat_id": exc.migrate_to_chat_id}
            self._record(call)
            return web.json_response(body, status=exc.status)
        call.result = result
        self._record(call)
        if self.answer_delay and method.lower().startswith(("send", "edit")):
            await asyncio.sleep(self.answer_delay)
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.Response:
        self.tokens.add(request.match_info["token"])
        path = request.match_info["path"]
        for file_id, file_path in self._file_paths.items():
            if file_path == path and file_id in self.uploads:
                return web.Response(body=self.uploads[file_id][1])
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    def _record(self, call: BotCall) -> None:
        self.calls.append(call)
        self._notify()

    def _check_migrated(self, params: dict[str, Any]) -> None:
        try:
            chat_id = int(params.get("chat_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if chat_id in self.migrated_chats:
            raise _ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                            migrate_to_chat_id=self.migrated_chats[chat_id])

    def _check_faults(self, method: str) -> None:
        queue = self._faults.get(method.lower())
        if queue:
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
            raise _ApiError(fault.status, fault.description, fault.retry_after)
        low = method.lower()
        if (
            self.rate_limit_per_second is not None
            and low.startswith("send")
            and low != "sendchataction"
        ):
            now = time.monotonic()
            while self._send_times and now - self._send_times[0] >= 1.0:
                self._send_times.popleft()
            if len(self._send_times) >= self.rate_limit_per_second:
                raise _ApiError(429, "Too Many Requests: retry after 1", 1)
            self._send_times.append(now)

    # ------------------------------------------------------------ methods

    def _set_webhook(self, params: dict[str, Any], call: BotCall) -> bool:
        self.webhook_url = str(params.get("url") or "")
        return True

    def _delete_webhook(self, params: dict[str, Any], call: BotCall) -> bool:
        self.webhook_url = ""
        return True

    def _default(self, params: dict[str, Any], call: BotCall) -> Any:
        # Unknown send* methods still return a Message so aiogram can parse it.
        low = call.method.lower()
        if low.startswith("send") and low not in ("sendchataction", "sendmediagroup"):
            chat_id = _chat_id(params)
            msg = self._new_message(chat_id)
            caption = self._render(params, "caption", _MAX_CAPTION, "message caption is too long")
            if caption is not None:
                msg["caption"] = caption
            self._attach_markup(msg, params)
            return self._store(chat_id, msg, params.get("caption"))
        return True

    async def _get_updates(self, params: dict[str, Any], call: BotCall) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = float(params.get("timeout") or 0)
        # Confirming an offset forgets every older update (negative: keep the last N).
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._updates or self._closing:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self._updates_event.clear()
            try:  # wake on push/stop, re-check at least every second
                await asyncio.wait_for(self._updates_event.wait(), min(1.0, remaining))
            except TimeoutError:
                pass

    def _send_message(self, params: dict[str, Any], call: BotCall) -> dict[str, Any]:
        chat_id = _chat_id(params)
        text = self._render(params, "text", _MAX_TEXT, "message is too long")
        if not text or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        msg = self._new_message(chat_id)
        msg["text"] = text
        self._attach_markup(msg, params)
        return self._store(chat_id, msg, params.get("text"))

    def _send_media(self, params: dict[str, Any], call: BotCall, kind: str) -> dict[str, Any]:
        chat_id = _chat_id(params)
        caption = self._render(params, "caption", _MAX_CAPTION, "message caption is too long")
        msg = self._new_message(chat_id)
        msg.update(self._media_object(kind, params.get(kind), call))
        if caption is not None:
            msg["caption"] = caption
        self._attach_markup(msg, params)
        return self._store(chat_id, msg, params.get("caption"))

    def _edit_text(self, params: dict[str, Any], call: BotCall) -> Any:
        key, msg = self._editable(params)
        if key is None:
            return True  # inline message
        if "text" not in msg:
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        text = self._render(params, "text", _MAX_TEXT, "message is too long")
        if not text or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        markup = self._markup(params)
        raw = params.get("text")
        if text == msg["text"] and raw == self._raw.get(key) and markup == msg.get("reply_markup"):
            raise _ApiError(400, _NOT_MODIFIED)
        msg["text"] = text
        self._raw[key] = raw
        return self._finish_edit(msg, markup)

    def _edit_caption(self, params: dict[str, Any], call: BotCall) -> Any:
        key, msg = self._editable(params)
        if key is None:
            return True
        if "text" in msg:
            raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = self._render(params, "caption", _MAX_CAPTION, "message caption is too long")
        markup = self._markup(params)
        raw = params.get("caption")
        if (
            caption == msg.get("caption")
            and raw == self._raw.get(key)
            and markup == msg.get("reply_markup")
        ):
            raise _ApiError(400, _NOT_MODIFIED)
        if caption is None:
            msg.pop("caption", None)
        else:
            msg["caption"] = caption
        self._raw[key] = raw
        return self._finish_edit(msg, markup)

    def _edit_reply_markup(self, params: dict[str, Any], call: BotCall) -> Any:
        key, msg = self._editable(params)
        if key is None:
            return True
        markup = self._markup(params)
        if markup == msg.get("reply_markup"):
            raise _ApiError(400, _NOT_MODIFIED)
        return self._finish_edit(msg, markup)

    def _edit_media(self, params: dict[str, Any], call: BotCall) -> Any:
        key, msg = self._editable(params)
        if key is None:
            return True
        if "text" in msg:
            raise _ApiError(400, "Bad Request: there is no media in the message to edit")
        media = params.get("media")
        if not isinstance(media, dict) or "type" not in media:
            raise _ApiError(400, "Bad Request: can't parse InputMedia: media not found")
        kind = media["type"]
        markup = self._markup(params)
        source = media.get("media")
        current = msg.get(kind)
        current_id = (current[-1] if isinstance(current, list) else current or {}).get("file_id")
        caption = self._render(media, "caption", _MAX_CAPTION, "message caption is too long")
        if (
            isinstance(source, str)
            and source == current_id
            and caption == msg.get("caption")
            and markup == msg.get("reply_markup")
        ):
            raise _ApiError(400, _NOT_MODIFIED)
        for old in ("photo", "document", "video", "animation", "audio"):
            msg.pop(old, None)
        msg.update(self._media_object(kind, source, call))
        if caption is None:
            msg.pop("caption", None)
        else:
            msg["caption"] = caption
        self._raw[key] = media.get("caption")
        return self._finish_edit(msg, markup)

    def _delete_message(self, params: dict[str, Any], call: BotCall) -> bool:
        key = (_chat_id(params), params.get("message_id"))
        self.messages.pop(key, None)
        self._raw.pop(key, None)
        return True

    def _get_chat_administrators(self, params: dict[str, Any], call: BotCall) -> list[dict]:
        admins = self.chat_admins.get(_chat_id(params), [])
        return [_chat_member(uid, "creator" if i == 0 else "administrator") for i, uid in enumerate(admins)]

    def _get_chat_member(self, params: dict[str, Any], call: BotCall) -> dict[str, Any]:
        admins = self.chat_admins.get(_chat_id(params), [])
        user_id = int(params.get("user_id") or 0)
        if user_id in admins:
            return _chat_member(user_id, "creator" if admins[0] == user_id else "administrator")
        return _chat_member(user_id, "member")

    def _get_chat(self, params: dict[str, Any], call: BotCall) -> dict[str, Any]:
        return {
            **_chat(_chat_id(params)),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _get_file(self, params: dict[str, Any], call: BotCall) -> dict[str, Any]:
        file_id = params.get("file_id")
        if file_id not in self._file_paths:
            raise _ApiError(400, "Bad Request: invalid file_id")
        result = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_path": self._file_paths[file_id],
        }
        if file_id in self.uploads:
            result["file_size"] = len(self.uploads[file_id][1])
        return result

    def _set_my_commands(self, params: dict[str, Any], call: BotCall) -> bool:
        self.commands = list(params.get("commands") or [])
        return True

    @staticmethod
    def _set_description(params: dict[str, Any], store: dict[str, str], field: str, limit: int) -> bool:
        text = str(params.get(field) or "")
        if len(text) > limit:
            raise _ApiError(400, f"Bad Request: {field.upper()}_TOO_LONG")
        store[str(params.get("language_code") or "")] = text
        return True

    def _delete_my_commands(self, params: dict[str, Any], call: BotCall) -> bool:
        self.commands = []
        return True

    # ------------------------------------------------------------ message helpers

    def _new_message(self, chat_id: int | str) -> dict[str, Any]:
        if chat_id is None:
            raise _ApiError(400, "Bad Request: chat_id is empty")
        ids = self._message_ids.setdefault(chat_id, itertools.count(100))
        return {
            "message_id": next(ids),
            "from": dict(BOT_USER),
            "chat": _chat(chat_id),
            "date": int(time.time()),
        }

    def _store(self, chat_id: int | str, msg: dict[str, Any], raw: str | None) -> dict[str, Any]:
        key = (chat_id, msg["message_id"])
        self.messages[key] = msg
        self._raw[key] = raw
        return copy.deepcopy(msg)

    def _editable(self, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(key, stored message) for an edit; (None, {}) for inline messages."""
        if params.get("inline_message_id") and "chat_id" not in params:
            return None, {}
        key = (_chat_id(params), params.get("message_id"))
        msg = self.messages.get(key)
        if msg is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return key, msg

    def _finish_edit(self, msg: dict[str, Any], markup: dict | None) -> dict[str, Any]:
        # Like Telegram, an edit without reply_markup removes the inline keyboard.
        if markup is None:
            msg.pop("reply_markup", None)
        else:
            msg["reply_markup"] = markup
        msg["edit_date"] = int(time.time())
        return copy.deepcopy(msg)

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The inline keyboard in ``params`` (validated, None-free), or None."""
        markup = params.get("reply_markup")
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None  # reply/remove keyboards are not part of the Message object
        markup = _drop_none(markup)
        for row in markup["inline_keyboard"]:
            for button in row:
                if not _BUTTON_ACTIONS & set(button):
                    raise _ApiError(
                        400,
                        "Bad Request: can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard",
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _attach_markup(self, msg: dict[str, Any], params: dict[str, Any]) -> None:
        markup = self._markup(params)
        if markup is not None:
            msg["reply_markup"] = markup

    def _render(
        self, params: dict[str, Any], name: str, limit: int, too_long: str
    ) -> str | None:
        """Rendered text of ``params[name]`` (HTML stripped), with Telegram's checks."""
        raw = params.get(name)
        if raw is None:
            return None
        text = str(raw)
        if str(params.get("parse_mode") or "").lower() == "html":
            text = _render_html(text)
        if len(text.encode("utf-16-le")) // 2 > limit:
            raise _ApiError(400, f"Bad Request: {too_long}")
        return text

    def _media_object(self, kind: str, source: Any, call: BotCall) -> dict[str, Any]:
        """The Message field(s) describing an uploaded or referenced file."""
        data: bytes | None = None
        filename = kind
        if isinstance(source, str) and source.startswith("attach://"):
            part = source.removeprefix("attach://")
            data, filename = call.files.get(part), call.filenames.get(part, part)
        elif kind in call.files:  # uploaded directly as the parameter itself
            data, filename = call.files[kind], call.filenames.get(kind, kind)
        if data is None and isinstance(source, str) and source in self._file_paths:
            file_id = source  # re-sending a known file_id
            size = len(self.uploads.get(file_id, ("", b""))[1])
            filename = self.uploads.get(file_id, (filename, b""))[0]
        else:
            n = next(self._file_ids)
            file_id = f"fake-{kind}-{n}"
            ext = ("." + filename.rsplit(".", 1)[-1]) if "." in filename else ""
            self._file_paths[file_id] = f"{kind}s/file_{n}{ext}"
            size = len(data or b"")
            if data is not None:
                self.uploads[file_id] = (filename, data)
        if kind == "photo":
            return {
                "photo": [
                    {"file_id": file_id, "file_unique_id": f"u{file_id}-s",
                     "width": 90, "height": 90, "file_size": size},
                    {"file_id": file_id, "file_unique_id": f"u{file_id}",
                     "width": 512, "height": 512, "file_size": size},
                ]
            }
        obj = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": size}
        if kind == "document":
            obj["file_name"] = filename
            obj["mime_type"] = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return {kind: obj}


# ---------------------------------------------------------------- request parsing


async def _parse_request(
    request: web.Request,
) -> tuple[dict[str, Any], dict[str, bytes], dict[str, str]]:
    """(params, files, filenames) from query string, JSON, urlencoded or multipart."""
    params: dict[str, Any] = {k: _decode_field(k, v) for k, v in request.query.items()}
    files: dict[str, bytes] = {}
    filenames: dict[str, str] = {}
    ctype = request.content_type
    if not request.can_read_body:
        pass
    elif ctype == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
    elif ctype == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.filename is not None:
                files[part.name] = bytes(await part.read())
                filenames[part.name] = part.filename
            else:
                params[part.name] = _decode_field(part.name, await part.text())
    else:  # application/x-www-form-urlencoded (aiogram's default without files)
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
                filenames[key] = value.filename
            else:
                params[key] = _decode_field(key, value)
    # Ids may arrive as strings in JSON bodies too.
    for key in ("chat_id", "message_id", "user_id", "from_chat_id"):
        value = params.get(key)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            params[key] = int(value)
    return params, files, filenames


def _decode_field(key: str, value: str) -> Any:
    """Decode a form value: JSON objects/arrays and scalars (except free-text fields)."""
    if key in _TEXT_FIELDS:
        return value
    stripped = value.strip()
    if stripped[:1] in ("{", "[") or _SCALAR_RE.fullmatch(stripped):
        try:
            return json.loads(stripped)
        except ValueError:
            return value
    return value


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _chat_id(params: dict[str, Any]) -> Any:
    return params.get("chat_id")


def _chat(chat_id: int | str) -> dict[str, Any]:
    """Minimal Chat object: private for positive ids, supergroup for negative, channel for @names."""
    if isinstance(chat_id, str):
        return {"id": -1001, "type": "channel", "title": chat_id, "username": chat_id.lstrip("@")}
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Test"}
    return {"id": chat_id, "type": "supergroup", "title": f"Test group {abs(chat_id)}"}


def _chat_member(user_id: int, status: str) -> dict[str, Any]:
    user = {"id": user_id, "is_bot": user_id == BOT_USER["id"], "first_name": f"User {user_id}"}
    if status == "creator":
        return {"status": "creator", "user": user, "is_anonymous": False}
    if status == "administrator":
        rights = dict.fromkeys(
            (
                "can_manage_chat", "can_delete_messages", "can_manage_video_chats",
                "can_restrict_members", "can_promote_members", "can_change_info",
                "can_invite_users", "can_post_stories", "can_edit_stories",
                "can_delete_stories", "can_send_welcome_messages", "can_pin_messages",
            ),
            True,
        )
        return {"status": "administrator", "user": user, "can_be_edited": False,
                "is_anonymous": False, **rights}
    return {"status": "member", "user": user}


class _TelegramHTML(HTMLParser):
    """Validates Telegram-flavoured HTML and collects the rendered plain text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.parts: list[str] = []
        self.stack: list[str] = []
        self.error: str | None = None

    def _offset(self) -> int:
        line, col = self.getpos()
        lines = self.source.split("\n")
        prefix = "\n".join(lines[: line - 1] + [lines[line - 1][:col]])
        return len(prefix.encode())

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if self.error:
            return
        if tag not in _HTML_TAGS or (tag == "span" and ("class", "tg-spoiler") not in attrs):
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._offset()}'
        else:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if not self.error:
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._offset()}'

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.stack:
            self.error = f"Unexpected end tag at byte offset {self._offset()}"
        elif self.stack[-1] != tag:
            self.error = (
                f'Unmatched end tag at byte offset {self._offset()}, '
                f'expected "</{self.stack[-1]}>", found "</{tag}>"'
            )
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _render_html(text: str) -> str:
    parser = _TelegramHTML(text)
    parser.feed(text)
    parser.close()
    if parser.error is None and parser.stack:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"'
    if parser.error:
        raise _ApiError(400, f"Bad Request: can't parse entities: {parser.error}")
    return "".join(parser.parts)


# ---------------------------------------------------------------- update builders

_user_message_ids = itertools.count(1_000_000)  # far from the bot's ids (100, 101, ...)
_callback_ids = itertools.count(1)
_AUTO: Any = object()


def _user(user_id: int, first_name: str, username: str | None, language_code: str | None) -> dict:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        user["username"] = username
    if language_code:
        user["language_code"] = language_code
    return user


def _user_chat(user_id: int, chat_id: int, chat_type: str | None, user: dict) -> dict:
    chat_type = chat_type or ("private" if chat_id == user_id else "supergroup")
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = user["first_name"]
        if "username" in user:
            chat["username"] = user["username"]
    else:
        chat["title"] = f"Test group {abs(chat_id)}"
    return chat


def message_update(
    user_id: int,
    text: str,
    *,
    chat_id: int | None = None,
    language_code: str | None = "en",
    username: str | None = None,
    first_name: str = "Test",
    chat_type: str | None = None,
    message_id: int | None = None,
    entities: list[dict[str, Any]] | None = _AUTO,
) -> dict[str, Any]:
    """A ``message`` Update (without update_id) of ``text`` sent by a user.

    Private chat when ``chat_id`` is omitted/equal to ``user_id``, else a
    supergroup.  Texts starting with "/" get a ``bot_command`` entity (needed by
    aiogram's ``Command`` filter) unless ``entities`` is given.
    """
    chat_id = user_id if chat_id is None else chat_id
    user = _user(user_id, first_name, username, language_code)
    message: dict[str, Any] = {
        "message_id": next(_user_message_ids) if message_id is None else message_id,
        "from": user,
        "chat": _user_chat(user_id, chat_id, chat_type, user),
        "date": int(time.time()),
        "text": text,
    }
    if entities is _AUTO:
        entities = None
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities = [
                {"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}
            ]
    if entities:
        message["entities"] = entities
    return {"message": message}


def callback_update(
    user_id: int,
    data: str,
    *,
    message_id: int,
    chat_id: int | None = None,
    language_code: str | None = "en",
    text: str = "menu",
    callback_id: str | None = None,
    reply_markup: dict[str, Any] | None = None,
    username: str | None = None,
    first_name: str = "Test",
) -> dict[str, Any]:
    """A ``callback_query`` Update (without update_id): the user pressed a button
    with ``data`` on the bot's message ``message_id`` (whose text is ``text``)."""
    chat_id = user_id if chat_id is None else chat_id
    user = _user(user_id, first_name, username, language_code)
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": dict(BOT_USER),
        "chat": _user_chat(user_id, chat_id, None, user),
        "date": int(time.time()),
        "text": text,
    }
    if reply_markup:
        message["reply_markup"] = reply_markup
    return {
        "callback_query": {
            "id": callback_id or str(next(_callback_ids)),
            "from": user,
            "message": message,
            "chat_instance": str(8_000_000_000 + abs(chat_id)),
            "data": data,
        }
    }


def bot_added_update(
    chat_id: int,
    *,
    by_user_id: int,
    old_status: str = "left",
    new_status: str = "member",
    chat_type: str = "supergroup",
    language_code: str | None = "en",
) -> dict[str, Any]:
    """A ``my_chat_member`` Update (without update_id): the bot's own membership in a group changed."""
    user = _user(by_user_id, "Owner", None, language_code)

    def member(status: str) -> dict[str, Any]:
        if status == "administrator":
            return {**_chat_member(BOT_USER["id"], "administrator"), "user": dict(BOT_USER)}
        return {"status": status, "user": dict(BOT_USER)}

    return {
        "my_chat_member": {
            "chat": _user_chat(by_user_id, chat_id, chat_type, user),
            "from": user,
            "date": int(time.time()),
            "old_chat_member": member(old_status),
            "new_chat_member": member(new_status),
        }
    }


def migrated_update(old_chat_id: int, new_chat_id: int, *, by_user_id: int) -> dict[str, Any]:
    """The service message Telegram puts in a supergroup that was upgraded from the group ``old_chat_id``."""
    user = _user(by_user_id, "Owner", None, "en")
    return {
        "message": {
            "message_id": next(_user_message_ids),
            "from": user,
            "chat": _user_chat(by_user_id, new_chat_id, "supergroup", user),
            "date": int(time.time()),
            "migrate_from_chat_id": old_chat_id,
        }
    }


def as_update(d: dict[str, Any], update_id: int = 1) -> Update:
    """Parse an update dict into ``aiogram.types.Update`` (for ``dp.feed_update``)."""
    return Update.model_validate({"update_id": update_id, **d})
