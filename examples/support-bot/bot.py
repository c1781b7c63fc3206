"""A support bot for roomcast: answers common questions in support rooms, hands off to a human.

It receives roomcast's integration events (signed Standard Webhooks POSTs, docs/events.md),
verifies each with the official `standardwebhooks` package, and answers a visitor's message in a
`support-*` room through roomcast's HTTP publish (`POST /rooms/{room}/messages`, a `service`
token, `from` naming the bot). When the visitor asks for a person ("human", "agent", ...) it says
so once and goes quiet: the conversation stays `waiting` in the agents' inbox. Once an agent has
taken the conversation (`assigned`) the bot says nothing more; when an agent closes it and the
visitor writes again (a new conversation), the bot answers again.

Where the conversation stands is read from the room itself: its newest `$system` status line
(what `conversation.status_changed` reports) and the bot's own hand-off line after it. Events
arrive at least once and may be reordered, so the room's history, not the order of arrival, is
what the bot trusts; deliveries are de-duplicated by event id and every answer is published with
an id derived from the event's, so a redelivered event can never be answered twice.

Standard library only, besides `standardwebhooks`. Configuration (environment):

  ROOMCAST_URL            the roomcast HTTP API, default http://127.0.0.1:3001
  ROOMCAST_SERVICE_TOKEN  a token with role `service` of the tenant to serve (required)
  BOT_LISTEN              where to receive webhooks, default 127.0.0.1:8787
  BOT_PUBLIC_URL          the URL roomcast posts to, default http://{BOT_LISTEN}/webhooks
  BOT_USER                the bot's user id in the rooms (messages' `from`), default helpbot
  BOT_ROOM_PREFIX         the rooms to answer in, default support-

At start the bot registers its endpoint (`POST /events/endpoints`, types `message.created`),
replacing one it registered before at the same URL, and keeps the secret roomcast returns; it
deletes the endpoint when stopped (SIGTERM, Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SYSTEM_SENDER = "$system"
ENDPOINT_DESCRIPTION = "support-bot"
MAX_BODY_BYTES = 1 << 20
# Event ids remembered to drop redeliveries (at-least-once delivery).
SEEN_EVENTS = 10_000
# History pages walked back looking for where the conversation stands.
MAX_PAGES = 20

log = logging.getLogger("support-bot")


# --- what the bot says --------------------------------------------------------------------------

HANDOFF = re.compile(r"\b(human|agent|person|operator|representative)s?\b", re.IGNORECASE)

FAQ = [
    (
        re.compile(r"\b(ship|shipping|shipped|deliver|delivery|track|tracking|order)\b", re.I),
        "Orders ship within 1 business day; you get a tracking link by email as soon as yours "
        "leaves the warehouse. Delivery takes 2-4 business days.",
    ),
    (
        re.compile(r"\b(return|returns|refund|refunds|exchange)\b", re.I),
        "You can return anything within 30 days for a full refund: start from 'My orders' and "
        "we email you a free return label.",
    ),
    (
        re.compile(r"\b(hours|open|opening|closed)\b", re.I),
        "Our team is here Monday to Friday, 9:00-18:00 CET. I answer around the clock.",
    ),
    (
        re.compile(r"\b(password|log ?in|sign ?in|account)\b", re.I),
        "To reset your password, use 'Forgot password?' on the sign-in page; the link in the "
        "email works for an hour.",
    ),
]

GREETING = (
    "Hi! I'm the support bot. I can help with shipping, returns, opening hours and passwords. "
    "Write 'human' at any time to talk to a person."
)
HANDOFF_TEXT = (
    "Sure, I'm getting a person from our team for you. Please stay here: someone will join "
    "this conversation shortly."
)


def answer(text: str) -> str | None:
    """What the bot replies to a visitor's message, or None to hand off to a person.

    This is where a call to an LLM would go: send the conversation so far (the room's history,
    `Roomcast.history`) with a system prompt about your shop, and return its reply, or None when
    it decides a human should take over. Keep the hand-off rule above it, so that asking for a
    person always works.
    """
    if HANDOFF.search(text):
        return None
    for pattern, reply in FAQ:
        if pattern.search(text):
            return reply
    return GREETING


# --- roomcast's HTTP API ------------------------------------------------------------------------


class Roomcast:
    """The few calls of roomcast's HTTP API the bot makes, with its service token."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def history(self, room: str, before: int | None = None) -> dict:
        """A page of the room's messages, oldest first: the newest ones, or those before a seq."""
        query = {"limit": "100"}
        if before is not None:
            query["before"] = str(before)
        path = (
            f"/rooms/{urllib.parse.quote(room, safe='')}/messages?{urllib.parse.urlencode(query)}"
        )
        return self.call("GET", path)

    def publish(self, room: str, message_id: str, sender: str, body: str, meta: dict) -> None:
        path = f"/rooms/{urllib.parse.quote(room, safe='')}/messages"
        self.call("POST", path, {"id": message_id, "from": sender, "body": body, "meta": meta})

    def register(self, url: str) -> tuple[str, str]:
        """Creates the bot's endpoint (after deleting one it made before at `url`): (id, secret)."""
        for endpoint in self.call("GET", "/events/endpoints").get("endpoints", []):
            if endpoint.get("url") == url and endpoint.get("description") == ENDPOINT_DESCRIPTION:
                self.unregister(endpoint["id"])
        created = self.call(
            "POST",
            "/events/endpoints",
            {"url": url, "types": ["message.created"], "description": ENDPOINT_DESCRIPTION},
        )
        return created["id"], created["secret"]

    def unregister(self, endpoint_id: str) -> None:
        self.call("DELETE", f"/events/endpoints/{urllib.parse.quote(endpoint_id, safe='')}")


# --- the bot ------------------------------------------------------------------------------------


def conversation_state(roomcast: Roomcast, room: str, bot_user: str) -> tuple[str | None, bool]:
    """Where the room's conversation stands: (status, whether the bot handed it off already).

    The status is the newest `$system` status line's; the hand-off counts only after the newest
    `waiting` line (a closed conversation that a visitor reopens starts afresh).
    """
    handed_off = False
    before = None
    for _ in range(MAX_PAGES):
        page = roomcast.history(room, before)
        messages = page.get("messages", [])
        for m in reversed(messages):
            meta = m.get("meta") or {}
            if m.get("from") == SYSTEM_SENDER and meta.get("status"):
                return meta["status"], handed_off
            if m.get("from") == bot_user and m.get("role") == "service" and meta.get("handoff"):
                handed_off = True
        if not page.get("more") or not messages:
            break
        before = messages[0]["seq"]
    return None, handed_off


class Bot:
    def __init__(self, roomcast: Roomcast, bot_user: str, room_prefix: str) -> None:
        self.roomcast = roomcast
        self.bot_user = bot_user
        self.room_prefix = room_prefix
        # Set once the endpoint is registered; deliveries before that are answered 503.
        self.webhook: Webhook | None = None
        self.work: queue.Queue[dict] = queue.Queue()
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seen_lock = threading.Lock()

    def accept(self, event: dict) -> None:
        """Takes a verified event (answering the delivery is not delayed by the work)."""
        with self.seen_lock:
            if event["id"] in self.seen:
                return
            self.seen[event["id"]] = None
            while len(self.seen) > SEEN_EVENTS:
                self.seen.popitem(last=False)
        self.work.put(event)

    def run(self) -> None:
        """Handles events one at a time, in the order they arrived."""
        while True:
            event = self.work.get()
            try:
                self.handle(event)
            except Exception:  # one event's failure (roomcast down, say) must not stop the bot
                log.exception("event %s", event.get("id"))

    def handle(self, event: dict) -> None:
        if event.get("type") != "message.created":
            return
        message = event.get("data") or {}
        room = message.get("room", "")
        # Visitors only: never the bot itself, another bot, an agent or the desk's lines.
        # Messages stored before roles were recorded have none and count as a user's.
        if not room.startswith(self.room_prefix) or message.get("role", "user") != "user":
            return
        if message.get("from") == SYSTEM_SENDER or message.get("deleted"):
            return
        status, handed_off = conversation_state(self.roomcast, room, self.bot_user)
        if status == "assigned":
            log.info("%s: an agent has the conversation; staying quiet", room)
            return
        if handed_off:
            log.info("%s: waiting for a person; staying quiet", room)
            return
        reply = answer(message.get("body", ""))
        if reply is None:
            body, meta = HANDOFF_TEXT, {"handoff": True}
        else:
            body, meta = reply, {}
        # The event's id makes the answer's: a redelivered event is stored once.
        self.roomcast.publish(room, f"bot-{event['id']}", self.bot_user, body, meta)
        log.info(
            "%s: answered seq %s%s",
            room,
            message.get("seq"),
            " (hand-off)" if reply is None else "",
        )


def handler_for(bot: Bot) -> type[BaseHTTPRequestHandler]:
    class Deliveries(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            webhook = bot.webhook
            if webhook is None:
                return self.reply(503)
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                return self.reply(411)
            if int(length) > MAX_BODY_BYTES:
                return self.reply(413)
            body = self.rfile.read(int(length))
            try:
                event = webhook.verify(body, dict(self.headers.items()))
            except WebhookVerificationError as e:
                log.warning("refused a delivery: %s", e)
                return self.reply(401)
            except ValueError:  # signed, but not JSON
                return self.reply(400)
            if not isinstance(event, dict) or "id" not in event:
                return self.reply(400)
            bot.accept(event)
            self.reply(204)

        def reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
            log.debug(format, *args)

    return Deliveries


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token = os.environ.get("ROOMCAST_SERVICE_TOKEN")
    if not token:
        print("ROOMCAST_SERVICE_TOKEN is required (a token with role service)", file=sys.stderr)
        return 2
    listen = os.environ.get("BOT_LISTEN", "127.0.0.1:8787")
    host, _, port = listen.rpartition(":")
    public_url = os.environ.get("BOT_PUBLIC_URL", f"http://{listen}/webhooks")
    roomcast = Roomcast(os.environ.get("ROOMCAST_URL", "http://127.0.0.1:3001"), token)
    bot = Bot(
        roomcast,
        os.environ.get("BOT_USER", "helpbot"),
        os.environ.get("BOT_ROOM_PREFIX", "support-"),
    )
    # Listening before registering: roomcast may deliver as soon as the endpoint exists.
    server = ThreadingHTTPServer((host, int(port)), handler_for(bot))
    try:
        endpoint_id, secret = roomcast.register(public_url)
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        print(
            f"cannot register the endpoint with roomcast at {roomcast.base}: {e}", file=sys.stderr
        )
        return 1
    bot.webhook = Webhook(secret)
    log.info("listening on %s, endpoint %s -> %s", listen, endpoint_id, public_url)
    threading.Thread(target=bot.run, daemon=True).start()

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    try:
        roomcast.unregister(endpoint_id)
    except (urllib.error.URLError, OSError) as e:
        log.warning("could not delete endpoint %s: %s", endpoint_id, e)
        return 1
    log.info("endpoint %s deleted; stopped", endpoint_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
