// Who wrote a message: roleOf reads the server's `role`, with the defaults of protocol.md.
import test from 'node:test';
import assert from 'node:assert/strict';
import { roleOf } from '../../src/sdk/desk.js';

test('roleOf: the role the server set; a user without one, a service when published (via)', () => {
  assert.equal(roleOf({ from: 'vic', role: 'user' }), 'user');
  assert.equal(roleOf({ from: 'ann', role: 'agent' }), 'agent');
  assert.equal(roleOf({ from: 'helpbot', role: 'service', via: 'backend' }), 'service');
  assert.equal(roleOf({ from: '$system', role: 'service' }), 'service');
  // Stored before roles: a person's, unless a service published it in someone's name.
  assert.equal(roleOf({ from: 'vic' }), 'user');
  assert.equal(roleOf({ from: 'helpbot', via: 'backend' }), 'service');
  // A role this client does not know is not trusted to be anything special.
  assert.equal(roleOf({ from: 'x', role: 'admin' }), 'user');
});
