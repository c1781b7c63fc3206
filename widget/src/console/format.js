// Words and numbers the console shows, kept apart from the DOM so they can be unit-tested.

/** "waiting 3 min" for a conversation waiting since `since` (epoch ms); hours past 60 min. */
export function waitingFor(since, now = Date.now()) {
  if (!since) return 'waiting';
  const min = Math.max(0, Math.floor((now - since) / 60000));
  if (min < 1) return 'waiting <1 min';
  if (min < 60) return `waiting ${min} min`;
  return `waiting ${Math.floor(min / 60)} h ${min % 60} min`;
}

/** The tab's title with a count in front while something needs the agent: "(2) roomcast agent console". */
export function titleWithCount(count, base) {
  return count > 0 ? `(${count}) ${base}` : base;
}

/** At most `max` characters of a message, on one line (for list previews and notifications). */
export function preview(text, max = 80) {
  const line = String(text || '').replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** A name isolated in plain text (first-strong isolate … pop): for desktop notifications, which take no markup. */
export function isolate(name) {
  return `\u2068${name}\u2069`;
}

/** Who a conversation is with: the visitor's name, else their id, else the room. */
export function visitorLabel(entry, room) {
  return entry?.name || entry?.visitor || room || entry?.room || '';
}

/** The availability the agent chose, read back from storage (default online, capacity 3). */
export function storedAvailability(raw) {
  let v = {};
  try {
    v = JSON.parse(raw || '{}') || {};
  } catch {
    v = {};
  }
  const status = ['online', 'away', 'offline'].includes(v.status) ? v.status : 'online';
  const capacity = Number.isInteger(v.capacity) && v.capacity >= 1 && v.capacity <= 50 ? v.capacity : 3;
  return { status, capacity };
}

/** "online · 1 of 3 conversations" from an `agent` reply (or an `agents` entry). */
export function agentText(agent) {
  if (!agent) return '';
  return `${agent.status} · ${agent.load ?? 0} of ${agent.capacity} conversations${agent.muted ? ' · muted' : ''}`;
}
