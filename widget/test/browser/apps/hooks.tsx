// A React app over every hook of roomcast/react, for test/browser/react-hooks.test.js:
// `?user=…&role=…&rooms=…&room=…` (dev tokens); the room's view can be unmounted and mounted again.
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { RoomcastClient } from 'roomcast';
import { RoomcastProvider, useConnection, useDesk, useMessages, usePresence, useReactions, useReadState, useSend, useTyping } from 'roomcast/react';

const params = new URLSearchParams(location.search);
const token = new URLSearchParams({ user: params.get('user') ?? '', role: params.get('role') ?? 'user', rooms: params.get('rooms') ?? '' });
const client = new RoomcastClient({
  url: `ws://${location.host}/`,
  token: async () => (await (await fetch(`/dev/token?${token}`)).json()).token,
});
// The test reads the client's listeners and room states.
Object.assign(window, { client });

function Room({ name }: { name: string }) {
  const { messages } = useMessages(name);
  const { send } = useSend(name);
  const { typing, notifyTyping } = useTyping(name);
  const { members } = usePresence(name);
  const { unread, markRead } = useReadState(name);
  const { react, unreact } = useReactions(name);
  const [text, setText] = useState('');
  // The controls below act on the room's first stored message that is not the service's.
  const first = messages.find((m) => m.seq != null && !m.system)?.seq;
  return (
    <section>
      <ul>
        {messages.map((m) => (
          <li
            key={m.key}
            data-seq={m.seq}
            data-status={m.status}
            data-reactions={m.reactions?.map((r) => `${r.emoji}:${r.count}:${r.users.join('+')}`).join(',')}
            data-reply={m.reply_to && `${m.reply_to.from}:${m.reply_to.deleted ? '(deleted)' : m.reply_to.preview}`}
          >
            {m.body}
          </li>
        ))}
      </ul>
      <button id="react" onClick={() => first && react(first, '👍')}>
        React
      </button>
      <button id="unreact" onClick={() => first && unreact(first, '👍')}>
        Take back
      </button>
      <button id="reply" onClick={() => first && send('on it', { replyTo: first })}>
        Reply
      </button>
      <p id="typing">{typing.join(',')}</p>
      <p id="members">{members.map((m) => `${m.user}:${m.status}`).sort().join(',')}</p>
      <p id="unread">{unread}</p>
      <button id="read" onClick={() => markRead()}>
        Mark read
      </button>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          send(text);
          setText('');
        }}
      >
        <input
          id="compose"
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            notifyTyping();
          }}
        />
      </form>
    </section>
  );
}

function Desk() {
  const { conversations, assign } = useDesk();
  return (
    <ul id="desk">
      {conversations.map((c) => (
        <li key={c.room} data-room={c.room} data-status={c.status}>
          {c.room} <button onClick={() => assign(c.room)}>Accept</button>
        </li>
      ))}
    </ul>
  );
}

function App() {
  const [open, setOpen] = useState(true);
  const { state } = useConnection();
  return (
    <main data-state={state}>
      <button id="toggle" onClick={() => setOpen((o) => !o)}>
        {open ? 'Close' : 'Open'}
      </button>
      {open && <Room name={params.get('room') ?? ''} />}
      {params.get('role') === 'agent' && <Desk />}
    </main>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <RoomcastProvider client={client}>
      <App />
    </RoomcastProvider>
  </StrictMode>,
);
