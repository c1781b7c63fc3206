// What the widget shows before the first message (protocol.md §15, "Embedding with a publishable
// key"): the team's avatars, the greeting and when to expect a reply; and, when nobody is there
// to answer (outside office hours, no agent online), that the reply comes by email, with a small
// form for the visitor's name and email address (sent with `identify`). Closures, not a class:
// the widget's size budget (minified names).

import { h } from '../ui/dom.js';

/** Whether nobody is there to answer now (the reply comes by email). */
export const byEmail = (desk) => desk.open === false || desk.agents_online === 0;

/**
 * The first-open state for `desk` ({team, greeting, reply_time, avatars, open, agents_online}).
 * `identify({name, email})` sends them and settles once the desk has them (or with `{code}`).
 * Returns {el, update(fresh, who, closed)}: `fresh` no message yet (the greeting shows), `who`
 * what the desk was told or null, `closed` the conversation is closed (nothing to ask).
 */
export function intro(desk, identify) {
  const input = (id, label, attrs) => [h('label', { for: id }, label), h('input', { id, autocomplete: label.toLowerCase(), ...attrs })];
  const nameField = input('rc-name', 'Name', { maxlength: '80' });
  const emailField = input('rc-email', 'Email', { type: 'email', required: true });
  const [name, email] = [nameField[1], emailField[1]];
  const err = h('p', { class: 'err', role: 'alert' });
  const save = h('button', null, 'Save');
  const away = h('p');
  const form = h('form', { class: 'who', 'aria-label': 'Your contact details' }, ...nameField, ...emailField, save, err);
  // Avatars: https only, each with alt text; names and texts set as text, the team's isolated.
  const avatars = (desk.avatars || []).filter((u) => /^https:\/\/[^/]/i.test(u)).slice(0, 3);
  const team = desk.team ? h('bdi', null, desk.team) : 'We';
  const hello = h(
    'div',
    null,
    ...avatars.map((src) => h('img', { src, alt: `${desk.team || 'Support'} team member` })),
    desk.greeting && h('p', { class: 'greet', dir: 'auto' }, desk.greeting),
    desk.reply_time && h('p', null, team, ` usually repl${desk.team ? 'ies' : 'y'} ${desk.reply_time}.`),
  );
  const el = h('section', { class: 'intro', 'aria-label': 'Welcome' }, hello, away, form);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    save.disabled = true;
    err.textContent = '';
    identify({ name: name.value, email: email.value })
      .catch((e) => (err.textContent = e.code === 'INVALID' ? 'Please check the email address.' : "Couldn't save your details. Try again."))
      .finally(() => (save.disabled = false));
  });
  return {
    el,
    update(fresh, who, closed) {
      const ask = byEmail(desk) && !closed;
      hello.hidden = !fresh;
      away.hidden = !ask;
      form.hidden = !ask || !!who?.email;
      const text = `We'll reply by email${who?.email ? ` to ${who.email}.` : '. Leave your name and email address:'}`;
      if (away.textContent !== text) away.textContent = text;
      el.hidden = !fresh && !ask;
    },
  };
}
