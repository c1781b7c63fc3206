import test from 'node:test';
import assert from 'node:assert/strict';
import { Timeline, quoteOf } from '../../src/sdk/timeline.js';

const m = (seq, extra = {}) => ({ room: 'r', seq, id: `id${seq}`, from: 'u', body: `b${seq}`, ts: seq, ...extra });

test('messages are de-duplicated by seq and listed in seq order', () => {
  const t = new Timeline();
  t.anchor(0);
  assert.equal(t.add(m(2)), 'added');
  assert.equal(t.add(m(1)), 'added');
  assert.equal(t.add(m(2)), 'duplicate');
  assert.equal(t.add(m(3)), 'added');
  assert.equal(t.add(m(1, { body: 'other' })), 'duplicate');
  assert.deepEqual(t.list().map((x) => x.seq), [1, 2, 3]);
  assert.equal(t.list()[0].body, 'b1');
  assert.equal(t.through, 3);
});

test('the resume point stops before a gap, and the gap is reported until filled', () => {
  const t = new Timeline();
  t.anchor(0);
  t.add(m(1));
  t.add(m(2));
  t.add(m(5));
  assert.equal(t.through, 2);
  assert.deepEqual(t.gap(), { after: 2, before: 5 });
  t.add(m(3));
  assert.deepEqual(t.gap(), { after: 3, before: 5 });
  t.add(m(4));
  assert.equal(t.through, 5);
  assert.equal(t.gap(), null);
  // A head beyond what is held is a gap too (a replay that said `more`, a lost ack).
  t.seeHead(8);
  assert.deepEqual(t.gap(), { after: 5 });
});

test('an anchored first join treats everything up to the head as older history', () => {
  const t = new Timeline();
  // A live message that raced ahead of `joined`.
  t.add(m(11));
  assert.equal(t.gap(), null, 'no gap before anchoring');
  t.anchor(10);
  assert.equal(t.through, 11);
  assert.equal(t.gap(), null);
  assert.ok(t.hasOlder);
  for (let s = 1; s <= 10; s++) t.add(m(s));
  assert.equal(t.hasOlder, false);
  assert.deepEqual(t.list().map((x) => x.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
});

test('edits and deletions seen again in a replay replace the held state', () => {
  const t = new Timeline();
  t.anchor(0);
  t.add(m(1));
  assert.equal(t.add(m(1, { body: 'new', edited_ts: 5 })), 'updated');
  assert.equal(t.get(1).body, 'new');
  assert.equal(t.add(m(1, { body: 'new', edited_ts: 5 })), 'duplicate');
  assert.equal(t.add({ room: 'r', seq: 1, id: 'id1', from: 'u', ts: 1, edited_ts: 9, deleted: true }), 'updated');
  assert.equal(t.get(1).body, undefined);
  assert.ok(t.amend(1, { body: 'x' }));
  assert.equal(t.amend(7, { body: 'x' }), false);
});

test('invalid seqs are ignored', () => {
  const t = new Timeline();
  t.anchor(0);
  assert.equal(t.add(m(0)), 'duplicate');
  assert.equal(t.add(m(-1)), 'duplicate');
  assert.equal(t.add(m(1.5)), 'duplicate');
  assert.equal(t.list().length, 0);
});

test('a reaction frame replaces its emoji entry in place, appends a new one and drops one at 0', () => {
  const t = new Timeline();
  t.add(m(1));
  assert.equal(t.react(1, { emoji: '👍', count: 1, users: ['a'] }), true);
  t.react(1, { emoji: '🎉', count: 1, users: ['b'] });
  t.react(1, { emoji: '👍', count: 2, users: ['a', 'b'] });
  assert.deepEqual(t.get(1).reactions, [{ emoji: '👍', count: 2, users: ['a', 'b'] }, { emoji: '🎉', count: 1, users: ['b'] }]);
  t.react(1, { emoji: '👍', count: 0, users: [] });
  assert.deepEqual(t.get(1).reactions, [{ emoji: '🎉', count: 1, users: ['b'] }]);
  assert.equal(t.react(9, { emoji: '👍', count: 1, users: ['a'] }), false, 'a message not held is left alone');
  // A deleted message loses its reactions.
  t.amend(1, { deleted: true });
  assert.equal(t.get(1).reactions, undefined);
});

test('replies held show their original deleted, also when the original is not held', () => {
  const t = new Timeline();
  t.add(m(2, { reply_to: { seq: 1, from: 'u', preview: 'b1' } }));
  t.add(m(3));
  t.add(m(4, { reply_to: { seq: 3, from: 'u', preview: 'b3' } }));
  t.amend(1, { deleted: true });
  assert.deepEqual(t.get(2).reply_to, { seq: 1, from: 'u', deleted: true });
  t.amend(3, { reactions: [{ emoji: '👍', count: 1, users: ['a'] }] });
  assert.deepEqual(t.get(4).reply_to, { seq: 3, from: 'u', preview: 'b3' }, 'a reaction leaves the quote as it is');
  t.amend(3, { deleted: true });
  assert.deepEqual(t.get(4).reply_to, { seq: 3, from: 'u', deleted: true });
});

test('a quote is the first 100 characters (code points) of the original, with … when cut', () => {
  assert.deepEqual(quoteOf({ seq: 1, from: 'u', body: 'hi' }), { seq: 1, from: 'u', preview: 'hi' });
  assert.deepEqual(quoteOf({ seq: 1, from: 'u', body: `${'😀'.repeat(100)}x` }), { seq: 1, from: 'u', preview: `${'😀'.repeat(100)}…` });
  assert.deepEqual(quoteOf({ seq: 1, from: 'u', body: '' }), { seq: 1, from: 'u' });
  assert.deepEqual(quoteOf({ seq: 1, from: 'u', deleted: true }), { seq: 1, from: 'u', deleted: true });
});
