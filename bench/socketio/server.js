// Socket.IO 4.8 peer for the roomcast benchmarks (docs/benchmarks.md).
//
// The same semantics the load generator measures on roomcast, in the idiomatic Socket.IO way:
//   - auth: an HS256 JWT in the connect packet's `auth.token` (claims `sub`, `rooms`, `exp`),
//     verified in a middleware, as roomcast verifies it on the upgrade;
//   - `join` (room) -> ack {room, head}; only rooms the token grants (`*` suffix = prefix);
//   - `message` {room, id, body} -> the room's next seq, kept in an in-memory per-room history
//     (last HISTORY_LIMIT messages) with an idempotency map (room, from, id) -> seq; ack
//     {id, room, seq, ts} to the sender, event `message` {room, seq, id, from, body, ts} to the
//     room's other sockets;
//   - `history` {room, limit} -> ack {messages}.
// Websocket transport only, no per-message deflate (roomcast has none either), one process (no
// Redis adapter: with one node it would only add a hop).
//
//   PORT=3002 JWT_SECRET=... node server.js      prints "listening on <port>" when ready
"use strict";

const crypto = require("node:crypto");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3002);
const secret = process.env.JWT_SECRET || "";
const HISTORY_LIMIT = 1000;

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

// Verifies an HS256 JWT; returns its claims or null.
function verifyToken(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const header = b64urlJson(parts[0]);
    if (header.alg !== "HS256") return null;
    const expected = crypto
      .createHmac("sha256", secret)
      .update(parts[0] + "." + parts[1])
      .digest();
    const given = Buffer.from(parts[2], "base64url");
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
    const claims = b64urlJson(parts[1]);
    if (typeof claims.sub !== "string" || typeof claims.exp !== "number") return null;
    if (Date.now() / 1000 >= claims.exp) return null;
    return claims;
  } catch {
    return null;
  }
}

function granted(rooms, room) {
  return (rooms || []).some((g) => (g.endsWith("*") ? room.startsWith(g.slice(0, -1)) : g === room));
}

const rooms = new Map(); // room -> { seq, history: [msg], ids: Map("from/id" -> seq) }
function roomState(name) {
  let r = rooms.get(name);
  if (!r) {
    r = { seq: 0, history: [], ids: new Map() };
    rooms.set(name, r);
  }
  return r;
}

const io = new Server(port, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 128 * 1024,
});

io.use((socket, next) => {
  const claims = verifyToken(socket.handshake.auth && socket.handshake.auth.token);
  if (!claims) return next(new Error("unauthorized"));
  socket.data.user = claims.sub;
  socket.data.grants = claims.rooms;
  next();
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    if (typeof ack !== "function") return;
    if (typeof room !== "string" || !granted(socket.data.grants, room)) {
      return ack({ error: "FORBIDDEN" });
    }
    socket.join(room);
    ack({ room, head: roomState(room).seq });
  });

  socket.on("message", (m, ack) => {
    if (typeof ack !== "function") return;
    if (!m || typeof m.room !== "string" || typeof m.id !== "string" || typeof m.body !== "string") {
      return ack({ error: "BAD_FRAME" });
    }
    if (!socket.rooms.has(m.room)) return ack({ error: "NOT_MEMBER" });
    const r = roomState(m.room);
    const key = socket.data.user + "/" + m.id;
    const known = r.ids.get(key);
    if (known !== undefined) {
      return ack({ id: m.id, room: m.room, seq: known, duplicate: true });
    }
    const msg = { room: m.room, seq: ++r.seq, id: m.id, from: socket.data.user, body: m.body, ts: Date.now() };
    r.history.push(msg);
    r.ids.set(key, msg.seq);
    if (r.history.length > HISTORY_LIMIT) {
      const old = r.history.shift();
      r.ids.delete(old.from + "/" + old.id);
    }
    ack({ id: m.id, room: m.room, seq: msg.seq, ts: msg.ts });
    socket.to(m.room).emit("message", msg);
  });

  socket.on("history", (q, ack) => {
    if (typeof ack !== "function") return;
    if (!q || !socket.rooms.has(q.room)) return ack({ error: "NOT_MEMBER" });
    const limit = Math.min(Math.max(Number(q.limit) || 50, 1), 100);
    ack({ room: q.room, messages: roomState(q.room).history.slice(-limit) });
  });
});

console.log(`listening on ${port}`);
