import test from 'node:test';
import assert from 'node:assert/strict';
import { linkify, isBlank, utf8Length, isolate } from '../../src/ui/text.js';

test('only http and https URLs become links', () => {
  assert.deepEqual(linkify('see https://example.com/a?b=1.'), ['see ', { href: 'https://example.com/a?b=1', text: 'https://example.com/a?b=1' }, '.']);
  assert.deepEqual(linkify('javascript:alert(1) and data:text/html,<b>x</b>'), ['javascript:alert(1) and data:text/html,<b>x</b>']);
  assert.deepEqual(linkify('x javascript:https://evil.example'), ['x javascript:', { href: 'https://evil.example/', text: 'https://evil.example' }]);
  assert.deepEqual(linkify('(http://a.example/x_(y)) end'), ['(', { href: 'http://a.example/x_(y)', text: 'http://a.example/x_(y)' }, ') end']);
  assert.deepEqual(linkify('HTTP://A.example'), [{ href: 'http://a.example/', text: 'HTTP://A.example' }]);
  assert.deepEqual(linkify('http:// nothing'), ['http:// nothing']);
  assert.deepEqual(linkify('no links'), ['no links']);
  assert.deepEqual(linkify(''), []);
});

test('blank once invisible characters are set aside', () => {
  assert.ok(isBlank(' \u200b\u202e\u2066\ufeff\n'));
  assert.ok(isBlank(''));
  assert.ok(!isBlank('\u202ehi'));
  assert.ok(!isBlank('a'));
});

test('utf8 length and isolation', () => {
  assert.equal(utf8Length('aé€😀'), 1 + 2 + 3 + 4);
  assert.equal(isolate('\u202eann'), '\u2068\u202eann\u2069');
});

test('typing line: names are separate parts to isolate', async () => {
  const { typingText } = await import('../../src/ui/chat.js');
  const id = (u) => u;
  assert.equal(typingText(['ann'], id), 'ann is typing…');
  assert.equal(typingText(['ann', 'bo', 'cy'], id), 'ann, bo and cy are typing…');
  assert.deepEqual(typingText(['ann', 'bo', 'cy'], id, (n) => `[${n}]`), ['[ann]', ', ', '[bo]', ' and ', '[cy]', ' are typing…']);
  assert.deepEqual(typingText(['ann'], id, (n) => `[${n}]`), ['[ann]', ' is typing…']);
});
