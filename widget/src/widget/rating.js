// After a conversation is closed: the rating prompt (protocol.md §15, "Rating"): a score 1 to 5
// and an optional comment, sent with `rate`; a thank-you; and "Start a new conversation" (the
// visitor's next message reopens it). A version rated or dismissed is not asked about again.
// Closures, not a class: the widget's size budget (minified names).

import { h } from '../ui/dom.js';

/**
 * `send(score, comment)` sends `rate`; `restart()` runs after "Start a new conversation" (focus
 * the composer); `done(v?)` reads, or with `v` keeps, the version rated or dismissed.
 * Returns {el, update(conversation)}.
 */
export function rating(send, restart, done) {
  let version = null;
  let score = 0;
  let thanking = false;
  const scores = [1, 2, 3, 4, 5].map((n) => h('button', { type: 'button', 'aria-label': `Rate ${n} out of 5`, onclick: () => pick(n) }, `${n}`));
  const comment = h('input', { id: 'rc-comment', maxlength: 2000 });
  const submit = h('button', null, 'Send rating');
  const err = h('p', { class: 'err', role: 'alert' });
  const form = h(
    'form',
    { 'aria-labelledby': 'rc-rate' },
    h('p', { id: 'rc-rate' }, 'How was this conversation?'),
    h('div', { class: 'stars', role: 'group', 'aria-label': 'Score' }, ...scores),
    h('label', { for: 'rc-comment' }, 'Comment (optional)'),
    comment,
    submit,
    err,
  );
  const thanks = h('p', { role: 'status' });
  const again = h('button', { type: 'button', class: 'again' }, 'Start a new conversation');
  const el = h('section', { class: 'rate', 'aria-label': 'Rate this conversation', hidden: true }, form, thanks, again);
  function pick(n) {
    score = n;
    scores.forEach((b, i) => b.setAttribute('aria-pressed', i + 1 === n));
    submit.disabled = !n;
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit.disabled = true;
    err.textContent = '';
    send(score, comment.value).then(
      () => {
        done(`${version}`);
        thanking = form.hidden = true;
        thanks.textContent = 'Thank you for your feedback!';
        again.focus();
      },
      () => {
        submit.disabled = false;
        err.textContent = "Couldn't send your rating. Try again.";
      },
    );
  });
  again.addEventListener('click', () => {
    done(`${version}`);
    thanking = false;
    el.hidden = true;
    restart();
  });
  return {
    el,
    update(conv) {
      const v = conv?.status === 'closed' ? conv.version : null;
      if (v !== version) {
        version = v;
        thanking = form.hidden = false;
        thanks.textContent = comment.value = '';
        pick(0);
      }
      el.hidden = v == null || (done() === `${v}` && !thanking);
    },
  };
}
